package metrics

import (
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// QueueRefreshDefault is how often, at most, queue sizes are read from Redis.
// asynq's GetQueueInfo walks every queue's sets and samples memory usage, so
// reading it on every scrape of several Prometheus replicas is costly
// (hibiken/asynq#1160); scrapes in between are served from the last read.
const QueueRefreshDefault = 5 * time.Second

var (
	queueTasksDesc = prometheus.NewDesc(Namespace+"_queue_tasks",
		"Tasks in a queue by state (pending, active, scheduled, retry, archived, completed, aggregating).",
		[]string{"queue", "state"}, nil)
	queueSizeDesc = prometheus.NewDesc(Namespace+"_queue_size",
		"Tasks in a queue, every state but completed.", []string{"queue"}, nil)
	queueLatencyDesc = prometheus.NewDesc(Namespace+"_queue_latency_seconds",
		"Age of the oldest pending task of a queue.", []string{"queue"}, nil)
	queueMemoryDesc = prometheus.NewDesc(Namespace+"_queue_memory_usage_approx_bytes",
		"Approximate Redis memory used by a queue (sampled by asynq).", []string{"queue"}, nil)
	queuePausedDesc = prometheus.NewDesc(Namespace+"_queue_paused",
		"1 when the queue is paused.", []string{"queue"}, nil)
	queueProcessedDesc = prometheus.NewDesc(Namespace+"_queue_processed_total",
		"Tasks processed by a queue's workers (succeeded or failed), as counted by asynq.", []string{"queue"}, nil)
	queueFailedDesc = prometheus.NewDesc(Namespace+"_queue_failed_total",
		"Task attempts that failed, as counted by asynq.", []string{"queue"}, nil)
	queueScrapeErrDesc = prometheus.NewDesc(Namespace+"_queue_scrape_errors_total",
		"Failed reads of queue information from Redis.", nil, nil)
)

// QueueCollector exports asynq's queue information, read at most every
// refresh interval.
type QueueCollector struct {
	insp    *asynq.Inspector
	refresh time.Duration
	now     func() time.Time

	mu      sync.Mutex
	last    time.Time
	infos   []*asynq.QueueInfo
	errs    float64
	reading bool
	done    chan struct{} // closed when the read in flight ends
}

// NewQueueCollector returns a collector of the queues on rdb (which stays
// owned by the caller). refresh <= 0 means QueueRefreshDefault.
func NewQueueCollector(rdb redis.UniversalClient, refresh time.Duration) *QueueCollector {
	if refresh <= 0 {
		refresh = QueueRefreshDefault
	}
	return &QueueCollector{insp: asynq.NewInspectorFromRedisClient(rdb), refresh: refresh, now: time.Now}
}

// WatchQueues registers a QueueCollector of rdb on reg and returns a
// function that unregisters it. One per registry is enough (the dashboard
// has one); workers need none. It panics when reg refuses the collector
// (one is registered already), as prometheus.MustRegister does.
func WatchQueues(reg prometheus.Registerer, rdb redis.UniversalClient) (unregister func()) {
	c := NewQueueCollector(rdb, 0)
	reg.MustRegister(c)
	return func() { reg.Unregister(c) }
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{queueTasksDesc, queueSizeDesc, queueLatencyDesc, queueMemoryDesc,
		queuePausedDesc, queueProcessedDesc, queueFailedDesc, queueScrapeErrDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	infos, errs := c.snapshot()
	for _, q := range infos {
		for _, s := range []struct {
			state string
			n     int
		}{
			{"pending", q.Pending}, {"active", q.Active}, {"scheduled", q.Scheduled}, {"retry", q.Retry},
			{"archived", q.Archived}, {"completed", q.Completed}, {"aggregating", q.Aggregating},
		} {
			ch <- prometheus.MustNewConstMetric(queueTasksDesc, prometheus.GaugeValue, float64(s.n), q.Queue, s.state)
		}
		ch <- prometheus.MustNewConstMetric(queueSizeDesc, prometheus.GaugeValue, float64(q.Size), q.Queue)
		ch <- prometheus.MustNewConstMetric(queueLatencyDesc, prometheus.GaugeValue, q.Latency.Seconds(), q.Queue)
		ch <- prometheus.MustNewConstMetric(queueMemoryDesc, prometheus.GaugeValue, float64(q.MemoryUsage), q.Queue)
		paused := 0.0
		if q.Paused {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(queuePausedDesc, prometheus.GaugeValue, paused, q.Queue)
		ch <- prometheus.MustNewConstMetric(queueProcessedDesc, prometheus.CounterValue, float64(q.ProcessedTotal), q.Queue)
		ch <- prometheus.MustNewConstMetric(queueFailedDesc, prometheus.CounterValue, float64(q.FailedTotal), q.Queue)
	}
	ch <- prometheus.MustNewConstMetric(queueScrapeErrDesc, prometheus.CounterValue, errs)
}

// snapshot returns the cached queue infos, reading them again when older
// than the refresh interval. Concurrent scrapes share one read.
func (c *QueueCollector) snapshot() ([]*asynq.QueueInfo, float64) {
	c.mu.Lock()
	if !c.last.IsZero() && c.now().Sub(c.last) < c.refresh {
		defer c.mu.Unlock()
		return c.infos, c.errs
	}
	if c.reading {
		done := c.done
		c.mu.Unlock()
		<-done
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.infos, c.errs
	}
	c.reading, c.done = true, make(chan struct{})
	c.mu.Unlock()

	infos, err := c.read()

	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = c.now()
	if err != nil {
		c.errs++ // keep serving the previous read
	} else {
		c.infos = infos
	}
	c.reading = false
	close(c.done)
	return c.infos, c.errs
}

func (c *QueueCollector) read() ([]*asynq.QueueInfo, error) {
	names, err := c.insp.Queues()
	if err != nil {
		return nil, err
	}
	out := make([]*asynq.QueueInfo, 0, len(names))
	for _, q := range names {
		info, err := c.insp.GetQueueInfo(q)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}
