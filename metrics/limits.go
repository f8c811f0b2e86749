package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/batonhq/baton/backend"
)

// Flow-control usage, read from Redis like the queue sizes: at most every
// refresh interval, however often Prometheus scrapes.

var (
	limitUsageDesc = prometheus.NewDesc(Namespace+"_limit_usage_ratio",
		"Use of a limit, 0 to 1: the busiest key's slots held over Max (concurrency) or allowance used over Burst (rate).",
		[]string{"limit", "type"}, nil)
	limitInUseDesc = prometheus.NewDesc(Namespace+"_limit_in_use",
		"Slots held (concurrency) or units of the burst allowance in use (rate), summed over keys.",
		[]string{"limit", "type"}, nil)
	limitWaitingDesc = prometheus.NewDesc(Namespace+"_limit_waiting_tasks",
		"Tasks waiting for a limit: reservations not yet due (rate) or tasks waiting for a slot (concurrency).",
		[]string{"limit", "type"}, nil)
	limitKeysDesc = prometheus.NewDesc(Namespace+"_limit_keys",
		"Key values of a limit used in the last day (1 for a limit without a key).", []string{"limit", "type"}, nil)
	limitCapacityDesc = prometheus.NewDesc(Namespace+"_limit_capacity",
		"A limit's capacity per key: Max (concurrency) or Rate per second (rate).", []string{"limit", "type"}, nil)
	limitScrapeErrDesc = prometheus.NewDesc(Namespace+"_limit_scrape_errors_total",
		"Failed reads of limit usage from Redis.", nil, nil)
)

// LimitCollector exports the usage of the limits live workers enforce
// (backend.ReadLimits), read at most every refresh interval.
type LimitCollector struct {
	rdb     redis.UniversalClient
	refresh time.Duration

	mu     sync.Mutex
	last   time.Time
	limits []backend.LimitState
	errs   float64
}

// NewLimitCollector returns a collector of the limits on rdb (owned by the
// caller). refresh <= 0 means QueueRefreshDefault.
func NewLimitCollector(rdb redis.UniversalClient, refresh time.Duration) *LimitCollector {
	if refresh <= 0 {
		refresh = QueueRefreshDefault
	}
	return &LimitCollector{rdb: rdb, refresh: refresh}
}

// WatchLimits registers a LimitCollector of rdb on reg and returns a
// function that unregisters it (a worker serving --metrics-addr does; the
// dashboard has its own). When one is registered on reg already, it
// registers nothing and the function does nothing.
func WatchLimits(reg prometheus.Registerer, rdb redis.UniversalClient) (unregister func()) {
	c := NewLimitCollector(rdb, 0)
	if err := reg.Register(c); err != nil {
		return func() {}
	}
	return func() { reg.Unregister(c) }
}

// Describe implements prometheus.Collector.
func (c *LimitCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{limitUsageDesc, limitInUseDesc, limitWaitingDesc, limitKeysDesc, limitCapacityDesc, limitScrapeErrDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *LimitCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock() // one read at a time; scrapes in between get the last one
	if c.last.IsZero() || time.Since(c.last) >= c.refresh {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ls, err := backend.ReadLimits(ctx, c.rdb)
		cancel()
		c.last = time.Now()
		if err != nil {
			c.errs++
		} else {
			c.limits = ls
		}
	}
	limits, errs := c.limits, c.errs
	c.mu.Unlock()
	for _, l := range limits {
		capacity := float64(l.Max)
		if l.Type == "rate" && l.PerMS > 0 {
			capacity = float64(l.Rate) / (float64(l.PerMS) / 1000)
		}
		ch <- prometheus.MustNewConstMetric(limitUsageDesc, prometheus.GaugeValue, l.Usage, l.Name, l.Type)
		ch <- prometheus.MustNewConstMetric(limitInUseDesc, prometheus.GaugeValue, l.InUse, l.Name, l.Type)
		ch <- prometheus.MustNewConstMetric(limitWaitingDesc, prometheus.GaugeValue, float64(l.Waiting), l.Name, l.Type)
		ch <- prometheus.MustNewConstMetric(limitKeysDesc, prometheus.GaugeValue, float64(l.ActiveKeys), l.Name, l.Type)
		ch <- prometheus.MustNewConstMetric(limitCapacityDesc, prometheus.GaugeValue, capacity, l.Name, l.Type)
	}
	ch <- prometheus.MustNewConstMetric(limitScrapeErrDesc, prometheus.CounterValue, errs)
}
