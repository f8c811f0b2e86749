package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/defaults"
)

// Defaults for FetchConfig's zero values: the same as `baton worker`'s.
const (
	FetchTimeoutDefault             = defaults.FetchTimeout
	FetchMaxBodyDefault       int64 = defaults.FetchMaxBody // 10 MiB
	FetchRetryAfterCapDefault       = defaults.FetchRetryAfterCap
	FetchUserAgentDefault           = defaults.FetchUserAgent
)

const (
	// fetchMaxRedirects is how many redirects a fetch follows; the next one
	// fails it.
	fetchMaxRedirects = 10
	// fetchAccept prefers JSON, then text, then anything.
	fetchAccept = "application/json, text/*;q=0.9, */*;q=0.5"
	// fetchDrainLimit is how much of an unwanted body is read so that the
	// connection can be reused.
	fetchDrainLimit = 4 << 10
)

// FetchArgs are the arguments of the fetch task.
type FetchArgs struct {
	URL string `json:"url"`
}

// Kind returns the fetch task's stable kind string, "fetch".
func (FetchArgs) Kind() string { return "fetch" }

// FetchResult is what a successful fetch returns. Exactly one of JSON and
// Text is set, unless the body is empty.
type FetchResult struct {
	URL         string          `json:"url"` // final URL after redirects (password redacted)
	Status      int             `json:"status"`
	ContentType string          `json:"content_type"` // the Content-Type header as sent
	Bytes       int             `json:"bytes"`        // body size as received (after any Content-Encoding)
	JSON        json.RawMessage `json:"json,omitempty"`
	Text        string          `json:"text,omitempty"`
	FetchedAt   time.Time       `json:"fetched_at"` // UTC, when the response headers arrived
}

// FetchConfig configures a Fetcher. The zero value is usable: every zero or
// negative field takes its default.
type FetchConfig struct {
	// Timeout bounds one fetch: connecting, redirects, headers and reading the
	// body. Defaults to FetchTimeoutDefault (30s).
	Timeout time.Duration
	// MaxBody is the largest body accepted, in bytes; a larger one fails the
	// task permanently. Defaults to FetchMaxBodyDefault (10 MiB).
	MaxBody int64
	// AllowPrivate lets fetches reach private, loopback and shared (CGNAT)
	// addresses: 10/8, 172.16/12, 192.168/16, 127/8, 100.64/10, ::1 and
	// fc00::/7. They are refused by default, because whoever can enqueue a
	// fetch could otherwise reach Redis and internal services. Link-local
	// and cloud metadata addresses are refused whatever its value. Set it to
	// fetch from services on the local network (the demo and tests do, for
	// their servers on 127.0.0.1). Defaults to false.
	AllowPrivate bool
	// UserAgent is sent with every request. Defaults to FetchUserAgentDefault.
	UserAgent string
	// RetryAfterCap bounds the delay taken from a Retry-After header on a 429
	// or 503. A longer delay is clamped: the task is retried after
	// RetryAfterCap (earlier than the server asked, which costs at most one
	// more attempt) rather than failed or parked for hours. Defaults to
	// FetchRetryAfterCapDefault (10m).
	RetryAfterCap time.Duration
	// PerHost, when its Rate is set, limits fetches per URL host across the
	// whole fleet (FetchTask adds it as the rate limit FetchHostLimit; its
	// Name and Key are set there). Defaults to off.
	PerHost baton.RateLimit
}

func (c FetchConfig) withDefaults() FetchConfig {
	if c.Timeout <= 0 {
		c.Timeout = FetchTimeoutDefault
	}
	if c.MaxBody <= 0 {
		c.MaxBody = FetchMaxBodyDefault
	}
	if c.UserAgent == "" {
		c.UserAgent = FetchUserAgentDefault
	}
	if c.RetryAfterCap <= 0 {
		c.RetryAfterCap = FetchRetryAfterCapDefault
	}
	return c
}

// Fetcher runs the fetch task. It keeps a connection pool, so create one per
// process and share it; it is safe for concurrent use.
//
// Every connection, including those made for redirects, goes through a dialer
// whose Control hook checks the IP address actually being connected to, after
// DNS resolution: a host name that resolves to a metadata address is refused
// before any packet is sent to it. For the same reason proxies from the
// environment (HTTP_PROXY and friends) are not used: through a proxy the
// dialled address would be the proxy's, not the destination's.
type Fetcher struct {
	cfg       FetchConfig
	dialer    *net.Dialer
	transport *http.Transport

	// lookup, when set, resolves host names in place of the dialer's own
	// resolver, so that tests can point a name at any address. The address
	// check still runs on every address dialled.
	lookup func(ctx context.Context, host string) ([]net.IPAddr, error)
	// now is the clock, for FetchedAt and Retry-After dates.
	now func() time.Time
}

// NewFetcher returns a Fetcher configured by cfg; zero fields take their
// defaults.
func NewFetcher(cfg FetchConfig) *Fetcher {
	f := &Fetcher{cfg: cfg.withDefaults(), now: time.Now}
	f.dialer = &net.Dialer{KeepAlive: 30 * time.Second, Control: f.control}
	f.transport = &http.Transport{
		Proxy:                 nil, // see the Fetcher doc: the address check must see the destination
		DialContext:           f.dialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return f
}

// CloseIdleConnections closes the pooled connections that are not in use, as
// http.Client.CloseIdleConnections does; call it when shutting down.
func (f *Fetcher) CloseIdleConnections() { f.transport.CloseIdleConnections() }

// Fetch GETs args.URL and returns its body as JSON, when the response says it
// is JSON (or says nothing) and the body is valid JSON, or else as text.
//
// Errors follow baton's retry contract. Network errors, timeouts and 5xx
// responses are returned plain (retried per the task's policy). A 429 or 503
// with a Retry-After header (seconds or HTTP-date) asks for a retry after that
// delay, clamped to RetryAfterCap. Everything that cannot succeed later is
// wrapped with baton.Permanent: other 4xx, unexpected statuses, an invalid URL
// or a scheme other than http and https, a refused address, more than 10
// redirects, and a body over MaxBody.
func (f *Fetcher) Fetch(ctx context.Context, args FetchArgs) (FetchResult, error) {
	u, err := parseFetchURL(args.URL)
	if err != nil {
		return FetchResult{}, baton.Permanent(err)
	}
	reqCtx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, u.String(), nil)
	if err != nil {
		return FetchResult{}, baton.Permanent(fmt.Errorf("fetch %q: invalid URL: %w", args.URL, err))
	}
	req.Header.Set("User-Agent", f.cfg.UserAgent)
	req.Header.Set("Accept", fetchAccept)

	// where names the request in errors, and the redirect target once there is one.
	where := "fetch " + u.Redacted()
	client := &http.Client{
		Transport: f.transport,
		CheckRedirect: func(next *http.Request, via []*http.Request) error {
			where = "fetch " + u.Redacted() + ": redirected to " + next.URL.Redacted()
			if len(via) > fetchMaxRedirects { // via holds the first request and the redirects followed
				return errTooManyRedirects
			}
			return checkScheme(next.URL)
		},
	}

	resp, err := client.Do(req)
	if err != nil {
		if resp != nil { // a CheckRedirect error returns the last response, body closed
			resp.Body.Close()
		}
		return FetchResult{}, f.transportError(ctx, where, err)
	}
	defer resp.Body.Close()
	fetchedAt := f.now().UTC()

	if err := f.statusError(resp, where); err != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, fetchDrainLimit))
		return FetchResult{}, err
	}
	body, err := f.readBody(ctx, resp, where)
	if err != nil {
		return FetchResult{}, err
	}

	res := FetchResult{
		URL:         resp.Request.URL.Redacted(),
		Status:      resp.StatusCode,
		ContentType: resp.Header.Get("Content-Type"),
		Bytes:       len(body),
		FetchedAt:   fetchedAt,
	}
	if (res.ContentType == "" || isJSONMediaType(res.ContentType)) && json.Valid(body) {
		res.JSON = json.RawMessage(body)
	} else {
		res.Text = strings.ToValidUTF8(string(body), "\uFFFD")
	}
	return res, nil
}

// parseFetchURL accepts absolute http and https URLs with a host.
func parseFetchURL(raw string) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, fmt.Errorf("fetch %q: invalid URL: empty", raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("fetch %q: invalid URL: %w", raw, err)
	}
	if err := checkScheme(u); err != nil {
		return nil, fmt.Errorf("fetch %s: %w", u.Redacted(), err)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("fetch %q: invalid URL: no host", raw)
	}
	return u, nil
}

// schemeError refuses a URL (first or redirected to) that is not http or https.
type schemeError struct{ scheme string }

func (e *schemeError) Error() string {
	if e.scheme == "" {
		return "no scheme (only http and https are fetched): refused"
	}
	return fmt.Sprintf("scheme %q is not http or https: refused", e.scheme)
}

func checkScheme(u *url.URL) error {
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		return nil
	}
	return &schemeError{scheme: u.Scheme}
}

var errTooManyRedirects = fmt.Errorf("stopped after %d redirects", fetchMaxRedirects)

// transportError classifies an error from http.Client.Do or from reading the
// body. ctx is the caller's context, before the per-request timeout.
func (f *Fetcher) transportError(ctx context.Context, where string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its text repeats the URL that where already names
	}
	var refused *refusedError
	var badScheme *schemeError
	switch {
	case errors.As(err, &refused):
		return baton.Permanent(fmt.Errorf("%s: %w", where, refused)) // no "dial tcp ...:" noise
	case errors.As(err, &badScheme), errors.Is(err, errTooManyRedirects):
		return baton.Permanent(fmt.Errorf("%s: %w", where, err))
	case ctx.Err() != nil:
		// The caller gave up (worker shutdown, task deadline): retryable, and
		// not this fetch's timeout.
		return fmt.Errorf("%s: %w", where, err)
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return fmt.Errorf("%s: timeout after %s: %w", where, f.cfg.Timeout, err)
	default:
		return fmt.Errorf("%s: %w", where, err)
	}
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// statusError returns nil for a 2xx response and the task's error otherwise.
func (f *Fetcher) statusError(resp *http.Response, where string) error {
	code := resp.StatusCode
	status := resp.Status
	if status == "" {
		status = fmt.Sprintf("%d %s", code, http.StatusText(code))
	}
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		d, ok := retryAfterHeader(resp.Header, f.now())
		if !ok {
			return fmt.Errorf("%s: %s (retryable)", where, status)
		}
		retryAfter := baton.RetryAfter
		if code == http.StatusTooManyRequests {
			retryAfter = baton.RateLimited // pauses the task's rate limits (per host) for everyone
		}
		if d > f.cfg.RetryAfterCap {
			return retryAfter(f.cfg.RetryAfterCap, fmt.Errorf("%s: %s (retryable: Retry-After %s, capped at %s)",
				where, status, d, f.cfg.RetryAfterCap))
		}
		return retryAfter(d, fmt.Errorf("%s: %s (retryable: Retry-After %s)", where, status, d))
	case code >= 500:
		return fmt.Errorf("%s: %s (retryable: server error)", where, status)
	case code >= 400:
		return baton.Permanent(fmt.Errorf("%s: %s (not retried: client error)", where, status))
	default: // 1xx, or a 3xx that is not a followable redirect
		return baton.Permanent(fmt.Errorf("%s: unexpected status %s (not retried)", where, status))
	}
}

// readBody reads at most MaxBody bytes, failing permanently on a larger body.
func (f *Fetcher) readBody(ctx context.Context, resp *http.Response, where string) ([]byte, error) {
	tooLarge := func() error {
		return baton.Permanent(fmt.Errorf("%s: response body exceeds the limit of %d bytes (MaxBody)", where, f.cfg.MaxBody))
	}
	if resp.ContentLength > f.cfg.MaxBody {
		return nil, tooLarge()
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.cfg.MaxBody+1))
	if err != nil {
		return nil, f.transportError(ctx, where, err)
	}
	if int64(len(body)) > f.cfg.MaxBody {
		return nil, tooLarge()
	}
	return body, nil
}

// isJSONMediaType reports whether a Content-Type is application/json or a
// +json type such as application/ld+json.
func isJSONMediaType(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// dialContext dials addr through f.dialer, resolving the host with f.lookup
// when it is set (tests) and with the dialer's resolver otherwise. Either way
// f.control vets each address before connecting.
func (f *Fetcher) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if f.lookup == nil {
		return f.dialer.DialContext(ctx, network, addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return f.dialer.DialContext(ctx, network, addr)
	}
	ips, err := f.lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
	}
	var first error
	for _, ip := range ips {
		conn, err := f.dialer.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return conn, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// control is the dialer's Control hook: it runs after the socket is created
// and before it connects, with the resolved "ip:port", and refuses denied
// addresses.
func (f *Fetcher) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("address %q is not an IP address and port: refused", address)
	}
	if reason, always := deniedReason(ap.Addr()); reason != "" && (always || !f.cfg.AllowPrivate) {
		return &refusedError{addr: ap.Addr(), reason: reason, byConfig: !always}
	}
	return nil
}

// refusedError is the error of a connection the address check refused.
type refusedError struct {
	addr     netip.Addr
	reason   string
	byConfig bool // refused because AllowPrivate is not set
}

func (e *refusedError) Error() string {
	if e.byConfig {
		return fmt.Sprintf("address %s is %s: refused; private and loopback addresses are refused unless allowed "+
			"(FetchConfig.AllowPrivate; baton: BATON_FETCH_ALLOW_PRIVATE=true or --fetch-allow-private)", e.addr, e.reason)
	}
	return fmt.Sprintf("address %s is %s: refused", e.addr, e.reason)
}

var (
	thisNetwork   = netip.MustParsePrefix("0.0.0.0/8")
	sharedCGNAT   = netip.MustParsePrefix("100.64.0.0/10")
	nat64         = netip.MustParsePrefix("64:ff9b::/96")
	awsMetadataV6 = netip.MustParseAddr("fd00:ec2::254")
	broadcastV4   = netip.MustParseAddr("255.255.255.255")
)

// deniedReason says why addr should not be fetched from: always is true for
// addresses refused whatever the configuration (link-local, metadata,
// unspecified, multicast, broadcast) and false for private ones (refused only
// unless AllowPrivate). It returns "" for a public address.
func deniedReason(addr netip.Addr) (reason string, always bool) {
	a := addr.WithZone("").Unmap()
	if nat64.Contains(a) { // 64:ff9b::a9fe:a9fe reaches 169.254.169.254 through a NAT64 gateway
		b := a.As16()
		if reason, always := deniedReason(netip.AddrFrom4([4]byte(b[12:]))); reason != "" {
			return reason + " (via NAT64)", always
		}
		return "", false
	}
	switch {
	case a.IsLinkLocalUnicast() || a == awsMetadataV6:
		return "link-local/metadata", true
	case a.IsUnspecified() || thisNetwork.Contains(a):
		return "unspecified", true
	case a.IsMulticast():
		return "multicast", true
	case a == broadcastV4:
		return "broadcast", true
	case a.IsLoopback():
		return "loopback", false
	case a.IsPrivate():
		return "private", false
	case sharedCGNAT.Contains(a):
		return "shared (CGNAT)", false
	}
	return "", false
}
