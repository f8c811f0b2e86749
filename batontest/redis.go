package batontest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// An Env's Redis is either embedded (miniredis, in this process) or a
// database of a real Redis that the Env leases for its lifetime.

// embeddedServer is a miniredis whose key expiry follows the wall clock:
// miniredis only expires keys when told that time passed, and baton and
// asynq rely on expiring keys (leases, pauses, heartbeats).
type embeddedServer struct {
	mr   *miniredis.Miniredis
	stop chan struct{}
	done chan struct{}
}

// clockTick is how often the embedded Redis's clock catches up.
const clockTick = 50 * time.Millisecond

func embedded() (*redis.Client, *embeddedServer, error) {
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		return nil, nil, fmt.Errorf("start the embedded Redis (miniredis): %w", err)
	}
	s := &embeddedServer{mr: mr, stop: make(chan struct{}), done: make(chan struct{})}
	go s.clock()
	return redis.NewClient(&redis.Options{Addr: mr.Addr()}), s, nil
}

func (s *embeddedServer) clock() {
	defer close(s.done)
	t := time.NewTicker(clockTick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.mr.FastForward(now.Sub(last))
			last = now
		}
	}
}

func (s *embeddedServer) Close() error {
	close(s.stop)
	<-s.done
	s.mr.Close()
	return nil
}

// A real Redis is shared: by the parallel tests of one binary and by the
// test binaries `go test ./...` runs at once. Each Env leases a database of
// its own (the URL's, or the next free one) with a key that expires unless
// renewed, empties it when it takes it and when it ends, and touches no
// other. asynq's keys cannot take a prefix, so a database is the unit of
// isolation.

// leaseKey holds the token of the Env that leases a database.
const leaseKey = "batontest:lease"

// leaseTTL is how long a lease outlives its last renewal (every third of
// it): a crashed test's database is free again after it.
const leaseTTL = 30 * time.Second

// leaseWait bounds the wait for a free database.
const leaseWait = 30 * time.Second

// claimScript takes a free database and empties it.
// KEYS[1] lease key; ARGV[1] token, ARGV[2] TTL in ms. Returns 1 when taken.
var claimScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('FLUSHDB')
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`)

// renewScript extends the lease while it is ours.
// KEYS[1] lease key; ARGV[1] token, ARGV[2] TTL in ms. Returns 1 when renewed.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)

// releaseScript empties the database (the lease goes with it) while the
// lease is ours. KEYS[1] lease key; ARGV[1] token. Returns 1 when emptied.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('FLUSHDB')
  return 1
end
return 0`)

type dbLease struct {
	rdb   *redis.Client
	token string
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// lease connects to the Redis at url and leases a database.
func lease(ctx context.Context, url string) (*redis.Client, *dbLease, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, nil, fmt.Errorf("Redis URL %q (Options.RedisURL or $%s): %w; want redis://host:port/db", url, RedisURLEnv, err)
	}
	p := *opts
	p.DB = 0 // a connection to a database out of range fails
	probe := redis.NewClient(&p)
	defer probe.Close()
	if err := probe.Ping(ctx).Err(); err != nil {
		return nil, nil, fmt.Errorf("Redis at %s (Options.RedisURL or $%s): %w", opts.Addr, RedisURLEnv, err)
	}
	dbs := 16
	if v, err := probe.ConfigGet(ctx, "databases").Result(); err == nil {
		if n, err := strconv.Atoi(v["databases"]); err == nil && n > 0 {
			dbs = n
		}
	}
	if opts.DB >= dbs {
		return nil, nil, fmt.Errorf("Redis at %s has %d databases, the URL names database %d", opts.Addr, dbs, opts.DB)
	}
	token := uuid.NewString()
	ctx, cancel := context.WithTimeout(ctx, leaseWait)
	defer cancel()
	for {
		for db := opts.DB; db < dbs; db++ {
			o := *opts
			o.DB = db
			c := redis.NewClient(&o)
			taken, err := claimScript.Run(ctx, c, []string{leaseKey}, token, leaseTTL.Milliseconds()).Int()
			if err == nil && taken == 1 {
				l := &dbLease{rdb: c, token: token, stop: make(chan struct{}), done: make(chan struct{})}
				go l.renew()
				return redis.NewClient(&o), l, nil
			}
			_ = c.Close()
			if err != nil && ctx.Err() == nil {
				return nil, nil, fmt.Errorf("lease database %d of the Redis at %s: %w", db, opts.Addr, err)
			}
			if ctx.Err() != nil {
				break // the wait is over: say why below
			}
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("every database from %d to %d of the Redis at %s is leased by another batontest Env (key %s): run fewer at once or give the server more databases: %w",
				opts.DB, dbs-1, opts.Addr, leaseKey, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (l *dbLease) renew() {
	defer close(l.done)
	t := time.NewTicker(leaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), leaseTTL/3)
			_ = renewScript.Run(ctx, l.rdb, []string{leaseKey}, l.token, leaseTTL.Milliseconds()).Err()
			cancel()
		}
	}
}

// Close empties the database, unless the lease was lost (the test
// stalled for longer than leaseTTL and another Env took it).
func (l *dbLease) Close() error {
	var err error
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n, rerr := releaseScript.Run(ctx, l.rdb, []string{leaseKey}, l.token).Int()
		switch {
		case rerr != nil:
			err = fmt.Errorf("empty the leased database: %w", rerr)
		case n == 0:
			err = errors.New("the lease of the Redis database expired before the Env closed (a test stalled for over 30s?); another Env may have used it")
		}
		err = errors.Join(err, l.rdb.Close())
	})
	return err
}
