package config

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Examples of valid URLs, one of which ends every parse error.
const (
	exampleSingle   = "redis://:password@127.0.0.1:6379/0"
	exampleSentinel = "redis-sentinel://:password@host1:26379,host2:26379/0?master=mymaster"
	exampleCluster  = "redis-cluster://host1:6379,host2:6379"
	exampleAll      = exampleSingle + ", rediss://host:6380/0 (TLS), " + exampleSentinel + " or " + exampleCluster
)

// ParseRedisURL turns a Redis address into options for redis.NewUniversalClient.
// It accepts:
//
//	redis://[user:password@]host[:port][/db]         a single node (port 6379, db 0 by default)
//	rediss://[user:password@]host[:port][/db]        the same over TLS
//	redis-sentinel://[user:password@]h1:p1,h2:p2[/db]?master=NAME
//	                                                 Sentinel; the password is the master's
//	                                                 (add sentinel_password=... if the
//	                                                 sentinels need one); rediss-sentinel:// for TLS
//	redis-cluster://[user:password@]h1:p1,h2:p2      Redis Cluster; rediss-cluster:// for TLS
//	h1:p1,h2:p2                                      a cluster address list
//	host:port                                        a single node (a one-address list)
//
// Any query parameter go-redis understands (pool_size, read_timeout, ...) may
// follow. timeout, if > 0, becomes the dial, read and write timeout unless the
// URL sets that timeout itself, so a caller learns quickly that Redis is down.
//
// Errors say what is wrong and show a valid URL; they never contain the password.
func ParseRedisURL(s string, timeout time.Duration) (*redis.UniversalOptions, error) {
	p, err := splitRedisURL(s)
	var opts *redis.UniversalOptions
	if err == nil {
		opts, err = p.options()
	}
	if err != nil {
		example := exampleAll
		switch {
		case p == nil:
		case p.mode == modeSingle:
			example = exampleSingle
		case p.mode == modeSentinel:
			example = exampleSentinel
		case p.mode == modeCluster:
			example = exampleCluster
		}
		return nil, fmt.Errorf("invalid Redis URL: %w; a valid one looks like %s", err, example)
	}
	if timeout > 0 {
		if opts.DialTimeout == 0 {
			opts.DialTimeout = timeout
		}
		if opts.ReadTimeout == 0 {
			opts.ReadTimeout = timeout
		}
		if opts.WriteTimeout == 0 {
			opts.WriteTimeout = timeout
		}
	}
	return opts, nil
}

// NewRedisClient parses url with ParseRedisURL and returns the matching
// client: a *redis.Client (honouring the database number), a Sentinel
// failover client or a *redis.ClusterClient. It does not contact Redis.
//
// timeout, if > 0, bounds each whole call (BATON_REDIS_TIMEOUT): go-redis
// retries a command that timed out (MaxRetries, 3 by default), so a Redis
// that accepts connections but does not answer (hung, or CLIENT PAUSE)
// would hold a caller four times the timeout, and longer behind a busy
// connection pool. The budget covers the wait for a connection, every
// attempt and the backoff between them; go-redis still retries a broken
// connection within it. Blocking commands (BLPOP, XREAD, ...) keep their
// own timeouts. A call cut short fails with an error that wraps
// os.ErrDeadlineExceeded and names BATON_REDIS_TIMEOUT.
func NewRedisClient(url string, timeout time.Duration) (redis.UniversalClient, error) {
	opts, err := ParseRedisURL(url, timeout)
	if err != nil {
		return nil, err
	}
	c := redis.NewUniversalClient(opts)
	if timeout > 0 {
		c.AddHook(callBudget{d: timeout})
	}
	return c, nil
}

// callBudget is the go-redis hook that bounds a whole command or pipeline,
// retries included, by d.
type callBudget struct{ d time.Duration }

func (b callBudget) DialHook(next redis.DialHook) redis.DialHook { return next }

func (b callBudget) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if blockingCommands[strings.ToLower(cmd.Name())] {
			return next(ctx, cmd)
		}
		bctx, cancel := context.WithTimeout(ctx, b.d)
		defer cancel()
		err := next(bctx, cmd)
		if b.ranOut(ctx, bctx, err) {
			err = b.timeoutErr()
			cmd.SetErr(err)
		}
		return err
	}
}

func (b callBudget) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		bctx, cancel := context.WithTimeout(ctx, b.d)
		defer cancel()
		err := next(bctx, cmds)
		if b.ranOut(ctx, bctx, err) {
			err = b.timeoutErr()
			for _, c := range cmds {
				if c.Err() == nil || b.ranOut(ctx, bctx, c.Err()) {
					c.SetErr(err)
				}
			}
		}
		return err
	}
}

// ranOut reports whether err is a timeout because the budget ran out,
// rather than the caller's own context ending. It reads the clock: a dial
// or read can fail at the deadline before the context's timer fired.
func (b callBudget) ranOut(caller, budget context.Context, err error) bool {
	if err == nil || caller.Err() != nil {
		return false
	}
	if dl, _ := budget.Deadline(); time.Now().Before(dl) {
		return false
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func (b callBudget) timeoutErr() error {
	return fmt.Errorf("no reply from Redis within %v (BATON_REDIS_TIMEOUT): %w", b.d, os.ErrDeadlineExceeded)
}

// blockingCommands wait on the server by design, with a timeout of their
// own: the budget does not apply to them.
var blockingCommands = map[string]bool{
	"blpop": true, "brpop": true, "brpoplpush": true, "blmove": true, "blmpop": true,
	"bzpopmin": true, "bzpopmax": true, "bzmpop": true, "xread": true, "xreadgroup": true,
	"wait": true, "waitaof": true,
}

// RedactRedisURL returns s with any password replaced by "xxxxx", for logs
// and error messages.
func RedactRedisURL(s string) string {
	scheme, rest, hasScheme := strings.Cut(s, "://")
	if !hasScheme || strings.ContainsAny(scheme, "@:/?") {
		scheme, rest, hasScheme = "", s, false
	}
	userinfo, hasUser, hosts, tail := splitAuthority(rest)
	var b strings.Builder
	if hasScheme {
		b.WriteString(scheme + "://")
	}
	if hasUser {
		if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
			b.WriteString(user + ":xxxxx@")
		} else {
			b.WriteString("xxxxx@")
		}
	}
	b.WriteString(hosts)
	path, query, hasQuery := strings.Cut(tail, "?")
	b.WriteString(path)
	if hasQuery {
		b.WriteString(redactQuery(query))
	}
	return b.String()
}

// splitAuthority splits rest ("[userinfo@]hosts[/path][?query]") by hand:
// the userinfo ends at the last "@" before the query, so an unescaped "/" or
// "@" in a password does not leak it into the host list.
func splitAuthority(rest string) (userinfo string, hasUser bool, hosts, tail string) {
	beforeQuery := rest
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		beforeQuery = rest[:i]
	}
	if at := strings.LastIndexByte(beforeQuery, '@'); at >= 0 {
		userinfo, hasUser, rest = rest[:at], true, rest[at+1:]
	}
	hosts = rest
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		hosts, tail = rest[:i], rest[i:]
	}
	return userinfo, hasUser, hosts, tail
}

// redactQuery hides the value of every query parameter whose name mentions a
// password.
func redactQuery(q string) string {
	parts := strings.Split(q, "&")
	for i, kv := range parts {
		k, _, ok := strings.Cut(kv, "=")
		if ok && strings.Contains(strings.ToLower(k), "password") {
			parts[i] = k + "=xxxxx"
		}
	}
	return "?" + strings.Join(parts, "&")
}

type redisMode int

const (
	modeSingle redisMode = iota
	modeSentinel
	modeCluster
)

// redisURLParts is a Redis URL split by hand, because net/url rejects host
// lists with IPv6 literals and echoes the password in its errors.
type redisURLParts struct {
	mode  redisMode
	tls   bool
	user  *url.Userinfo
	addrs []string
	path  string
	query url.Values
}

func splitRedisURL(s string) (*redisURLParts, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, badURL("it is empty")
	}
	p := &redisURLParts{mode: modeCluster}
	defPort := "6379"
	scheme, rest, hasScheme := strings.Cut(s, "://")
	if hasScheme {
		switch strings.ToLower(scheme) {
		case "redis":
			p.mode = modeSingle
		case "rediss":
			p.mode, p.tls = modeSingle, true
		case "redis-sentinel", "sentinel":
			p.mode, defPort = modeSentinel, "26379"
		case "rediss-sentinel":
			p.mode, p.tls, defPort = modeSentinel, true, "26379"
		case "redis-cluster":
			p.mode = modeCluster
		case "rediss-cluster":
			p.mode, p.tls = modeCluster, true
		case "unix":
			return nil, badURL("unix sockets are not supported; listen on TCP and use redis://127.0.0.1:6379/0")
		default:
			if strings.ContainsAny(scheme, "@:/") {
				scheme = "..." // may hold a password
			}
			return nil, badURL(fmt.Sprintf("unknown scheme %q", scheme))
		}
	} else {
		rest = s
	}

	userinfo, hasUser, hosts, tail := splitAuthority(rest)
	if hasUser {
		user, pass, hasPass := strings.Cut(userinfo, ":")
		var err1, err2 error
		user, err1 = url.PathUnescape(user)
		pass, err2 = url.PathUnescape(pass)
		if err1 != nil || err2 != nil {
			return p, badURL("the user:password part is malformed; percent-encode special characters in the password (% is %25, @ is %40, : is %3A, / is %2F)")
		}
		p.user = url.User(user)
		if hasPass {
			p.user = url.UserPassword(user, pass)
		}
	}
	// net/url parses the path and query; "h" stands in for the host list.
	u, err := url.Parse("redis://h" + tail)
	if err != nil {
		why := "the path or query is malformed"
		if !strings.Contains(strings.ToLower(tail), "password") {
			why += ": " + urlErrDetail(err)
		}
		return p, badURL(why)
	}
	p.path, p.query = u.Path, u.Query()

	if hosts == "" {
		if p.mode == modeSingle {
			hosts = "localhost"
		} else {
			return p, badURL("no host given")
		}
	}
	for h := range strings.SplitSeq(hosts, ",") {
		addr, err := normalizeAddr(strings.TrimSpace(h), defPort)
		if err != nil {
			return p, err
		}
		p.addrs = append(p.addrs, addr)
	}
	if !hasScheme && len(p.addrs) == 1 {
		p.mode = modeSingle // "host:port" is one node, as in redis.UniversalOptions
	}
	if p.mode == modeSingle && len(p.addrs) > 1 {
		return p, badURL(fmt.Sprintf("%s:// takes one host but %d are given; for Redis Cluster use redis-cluster://%s, for Sentinel redis-sentinel://%s/0?master=mymaster",
			scheme, len(p.addrs), hosts, hosts))
	}
	return p, nil
}

func normalizeAddr(h, defPort string) (string, error) {
	if h == "" {
		return "", badURL("an address in the host list is empty; separate addresses with single commas")
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		// No port: "host", "[::1]" or a bare IPv6 address.
		host = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		port = defPort
		if strings.ContainsAny(host, "[]") {
			return "", badURL(fmt.Sprintf("address %q is malformed; write IPv6 addresses as [::1]:%s", h, defPort))
		}
	}
	if host == "" {
		return "", badURL(fmt.Sprintf("address %q has no host name", h))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", badURL(fmt.Sprintf("address %q has an invalid port %q; ports are 1-65535, e.g. %s:%s", h, port, host, defPort))
	}
	return net.JoinHostPort(host, port), nil
}

// goRedisURL writes the URL in go-redis's own form: the first address as
// the host, the others as addr= parameters, q as the query.
func (p *redisURLParts) goRedisURL(q url.Values) string {
	scheme := "redis"
	if p.tls {
		scheme = "rediss"
	}
	for _, a := range p.addrs[1:] {
		q.Add("addr", a)
	}
	u := url.URL{Scheme: scheme, User: p.user, Host: p.addrs[0], Path: p.path, RawQuery: q.Encode()}
	return u.String()
}

// options has go-redis parse the URL (redis.ParseURL, ParseFailoverURL or
// ParseClusterURL, which read the credentials, database, TLS and every
// query option) and returns the result as UniversalOptions.
func (p *redisURLParts) options() (*redis.UniversalOptions, error) {
	switch p.mode {
	case modeSentinel:
		o, err := p.sentinel()
		if err != nil {
			return nil, err
		}
		return universal(o, o.SentinelAddrs), nil
	case modeCluster:
		o, err := p.cluster()
		if err != nil {
			return nil, err
		}
		u := universal(o, o.Addrs)
		u.IsClusterMode = true
		return u, nil
	default:
		o, err := redis.ParseURL(p.goRedisURL(p.query))
		if err != nil {
			return nil, goRedisErr(err)
		}
		return universal(o, []string{o.Addr}), nil
	}
}

func (p *redisURLParts) sentinel() (*redis.FailoverOptions, error) {
	q := maps.Clone(p.query)
	master := cmp.Or(q.Get("master"), q.Get("master_name"))
	if master == "" {
		return nil, badURL("a Sentinel URL needs the master's name: add ?master=NAME")
	}
	for _, k := range []string{"password", "username"} {
		if q.Has(k) {
			return nil, badURL(fmt.Sprintf("put the master's credentials in the URL (redis-sentinel://user:password@host...), not in ?%s=", k))
		}
	}
	for _, k := range []string{"replica_only", "use_disconnected_replicas"} {
		if q.Has(k) {
			return nil, badURL(fmt.Sprintf("option %s is not supported", k))
		}
	}
	sentinelUser, sentinelPass := q.Get("sentinel_username"), q.Get("sentinel_password")
	for _, k := range []string{"master", "sentinel_username", "sentinel_password"} {
		q.Del(k)
	}
	q.Set("master_name", master)
	o, err := redis.ParseFailoverURL(p.goRedisURL(q))
	if err != nil {
		return nil, goRedisErr(err)
	}
	// go-redis reads the userinfo as the sentinels' credentials; in our
	// URLs it is the master's, and the sentinels' are query parameters.
	o.Username, o.Password = o.SentinelUsername, o.SentinelPassword
	o.SentinelUsername, o.SentinelPassword = sentinelUser, sentinelPass
	return o, nil
}

func (p *redisURLParts) cluster() (*redis.ClusterOptions, error) {
	if db := strings.Trim(p.path, "/"); db != "" && db != "0" {
		return nil, badURL(fmt.Sprintf("Redis Cluster has only database 0; remove /%s from the URL", db))
	}
	if p.query.Has("db") {
		return nil, badURL("Redis Cluster has only database 0; remove ?db= from the URL")
	}
	o, err := redis.ParseClusterURL(p.goRedisURL(maps.Clone(p.query)))
	if err != nil {
		return nil, goRedisErr(err)
	}
	return o, nil
}

// universal copies every exported field of a go-redis Options,
// FailoverOptions or ClusterOptions that UniversalOptions has too, with the
// same name and type, so every option go-redis parsed reaches the client
// without a field list to keep up with go-redis. The addresses (Addr,
// SentinelAddrs, Addrs) are given apart.
func universal(src any, addrs []string) *redis.UniversalOptions {
	u := &redis.UniversalOptions{Addrs: addrs}
	to, from := reflect.ValueOf(u).Elem(), reflect.ValueOf(src).Elem()
	for i := range from.NumField() {
		f := from.Type().Field(i)
		if !f.IsExported() || f.Name == "Addrs" {
			continue
		}
		if dst := to.FieldByName(f.Name); dst.IsValid() && dst.CanSet() && dst.Type() == f.Type {
			dst.Set(from.Field(i))
		}
	}
	return u
}

func badURL(why string) error { return errors.New(why) }

// goRedisErr rewords a go-redis parse error. Those name options and values
// of non-secret parameters, never the password.
func goRedisErr(err error) error {
	return badURL(strings.TrimPrefix(err.Error(), "redis: "))
}

// urlErrDetail is the reason inside a *url.Error, without the URL (which may
// hold a password).
func urlErrDetail(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return "malformed"
}
