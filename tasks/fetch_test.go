package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/batonhq/baton"
)

// fetchSetup returns a Fetcher with cfg and a test server running h, both
// closed at the end of the test. The server listens on 127.0.0.1, so the
// Fetcher is allowed private and loopback addresses.
func fetchSetup(t *testing.T, cfg FetchConfig, h http.HandlerFunc) (*Fetcher, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	cfg.AllowPrivate = true
	f := NewFetcher(cfg)
	t.Cleanup(f.CloseIdleConnections)
	return f, srv
}

// requireRetryable checks that err is a plain, retry-per-policy error.
func requireRetryable(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	require.False(t, baton.IsPermanent(err), "want retryable, got permanent: %v", err)
	_, ok := baton.RetryAfterDelay(err)
	require.False(t, ok, "want no Retry-After delay: %v", err)
}

func TestFetch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("JSONBody", func(t *testing.T) {
		t.Parallel()
		f, srv := fetchSetup(t, FetchConfig{}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			_, _ = w.Write([]byte(`{"title":"baton","stars":3}`))
		})
		res, err := f.Fetch(ctx, FetchArgs{URL: srv.URL + "/data"})
		require.NoError(t, err)
		require.Equal(t, srv.URL+"/data", res.URL)
		require.Equal(t, http.StatusOK, res.Status)
		require.Equal(t, "application/json; charset=utf-8", res.ContentType)
		require.JSONEq(t, `{"title":"baton","stars":3}`, string(res.JSON))
		require.Empty(t, res.Text)
		require.Equal(t, 27, res.Bytes)
		require.WithinDuration(t, time.Now(), res.FetchedAt, time.Minute)

		// The result round-trips as the task's JSON result.
		enc, err := json.Marshal(res)
		require.NoError(t, err)
		require.Contains(t, string(enc), `"json":{"title":"baton","stars":3}`)
	})

	t.Run("InvalidJSONIsText", func(t *testing.T) {
		t.Parallel()
		f, srv := fetchSetup(t, FetchConfig{}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"truncated":`))
		})
		res, err := f.Fetch(ctx, FetchArgs{URL: srv.URL})
		require.NoError(t, err)
		require.Nil(t, res.JSON)
		require.Equal(t, `{"truncated":`, res.Text)
	})

	t.Run("TextBody", func(t *testing.T) {
		t.Parallel()
		f, srv := fetchSetup(t, FetchConfig{}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write([]byte("<h1>hello</h1>"))
		})
		res, err := f.Fetch(ctx, FetchArgs{URL: srv.URL})
		require.NoError(t, err)
		require.Equal(t, "text/html; charset=utf-8", res.ContentType)
		require.Equal(t, "<h1>hello</h1>", res.Text)
		require.Nil(t, res.JSON)
		require.Equal(t, 14, res.Bytes)
	})

	t.Run("HeadersSent", func(t *testing.T) {
		t.Parallel()
		var ua, accept atomic.Value
		f, srv := fetchSetup(t, FetchConfig{UserAgent: "research-bot/2"}, func(w http.ResponseWriter, r *http.Request) {
			ua.Store(r.UserAgent())
			accept.Store(r.Header.Get("Accept"))
		})
		_, err := f.Fetch(ctx, FetchArgs{URL: srv.URL})
		require.NoError(t, err)
		require.Equal(t, "research-bot/2", ua.Load())
		require.Equal(t, "application/json, text/*;q=0.9, */*;q=0.5", accept.Load())
	})

	t.Run("DefaultUserAgent", func(t *testing.T) {
		t.Parallel()
		var ua atomic.Value
		f, srv := fetchSetup(t, FetchConfig{}, func(w http.ResponseWriter, r *http.Request) {
			ua.Store(r.UserAgent())
		})
		_, err := f.Fetch(ctx, FetchArgs{URL: srv.URL})
		require.NoError(t, err)
		require.Equal(t, FetchUserAgentDefault, ua.Load())
	})

	t.Run("RedirectFollowed", func(t *testing.T) {
		t.Parallel()
		f, srv := fetchSetup(t, FetchConfig{}, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/old" {
				http.Redirect(w, r, "/new", http.StatusMovedPermanently)
				return
			}
			_, _ = w.Write([]byte("moved here"))
		})
		res, err := f.Fetch(ctx, FetchArgs{URL: srv.URL + "/old"})
		require.NoError(t, err)
		require.Equal(t, srv.URL+"/new", res.URL)
		require.Equal(t, "moved here", res.Text)
	})

	t.Run("TooManyRedirects", func(t *testing.T) {
		t.Parallel()
		var hits atomic.Int32
		f, srv := fetchSetup(t, FetchConfig{}, func(w http.ResponseWriter, r *http.Request) {
			n := hits.Add(1)
			http.Redirect(w, r, "/hop"+strconv.Itoa(int(n)), http.StatusFound)
		})
		_, err := f.Fetch(ctx, FetchArgs{URL: srv.URL})
		require.True(t, baton.IsPermanent(err), "got %v", err)
		require.ErrorContains(t, err, "stopped after 10 redirects")
		require.EqualValues(t, 11, hits.Load()) // the first request and 10 redirects
	})

	t.Run("NotFoundIsPermanent", func(t *testing.T) {
		t.Parallel()
		f, srv := fetchSetup(t, FetchConfig{}, http.NotFound)
		_, err := f.Fetch(ctx, FetchArgs{URL: srv.URL + "/missing"})
		require.True(t, baton.IsPermanent(err), "got %v", err)
		require.EqualError(t, err, "fetch "+srv.URL+"/missing: 404 Not Found (not retried: client error)")
	})

	t.Run("ServerErrorIsRetryable", func(t *testing.T) {
		t.Parallel()
		f, srv := fetchSetup(t, FetchConfig{}, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		})
		_, err := f.Fetch(ctx, FetchArgs{URL: srv.URL})
		requireRetryable(t, err)
		require.ErrorContains(t, err, "500 Internal Server Error")
	})

	t.Run("RetryAfter", func(t *testing.T) {
		t.Parallel()
		serverNow := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
		for _, tc := range []struct {
			name       string
			status     int
			retryAfter string
			want       time.Duration
		}{
			{"503Seconds", http.StatusServiceUnavailable, "2", 2 * time.Second},
			{"429Seconds", http.StatusTooManyRequests, "2", 2 * time.Second},
			{"503Date", http.StatusServiceUnavailable, serverNow.Add(2 * time.Second).Format(http.TimeFormat), 2 * time.Second},
			{"429Date", http.StatusTooManyRequests, serverNow.Add(20 * time.Second).Format(http.TimeFormat), 20 * time.Second},
			{"DateInThePast", http.StatusTooManyRequests, serverNow.Add(-time.Hour).Format(http.TimeFormat), 0},
			{"AboveCapClamped", http.StatusTooManyRequests, "3600", 30 * time.Second},
			{"DateAboveCapClamped", http.StatusServiceUnavailable, serverNow.Add(24 * time.Hour).Format(http.TimeFormat), 30 * time.Second},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				f, srv := fetchSetup(t, FetchConfig{RetryAfterCap: 30 * time.Second}, func(w http.ResponseWriter, r *http.Request) {
					// An HTTP-date is measured against the server's clock.
					w.Header().Set("Date", serverNow.Format(http.TimeFormat))
					w.Header().Set("Retry-After", tc.retryAfter)
					w.WriteHeader(tc.status)
				})
				_, err := f.Fetch(ctx, FetchArgs{URL: srv.URL})
				require.Error(t, err)
				require.False(t, baton.IsPermanent(err))
				d, ok := baton.RetryAfterDelay(err)
				require.True(t, ok, "want a Retry-After delay: %v", err)
				require.Equal(t, tc.want, d)
				require.ErrorContains(t, err, strconv.Itoa(tc.status))
			})
		}
	})

	t.Run("RetryAfterAgainstLocalClock", func(t *testing.T) {
		t.Parallel()
		f, srv := fetchSetup(t, FetchConfig{}, func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Date"] = nil // suppress the server's Date header
			w.Header().Set("Retry-After", time.Now().Add(5*time.Second).Format(http.TimeFormat))
			w.WriteHeader(http.StatusServiceUnavailable)
		})
		_, err := f.Fetch(ctx, FetchArgs{URL: srv.URL})
		d, ok := baton.RetryAfterDelay(err)
		require.True(t, ok, "want a Retry-After delay: %v", err)
		require.InDelta(t, 5*time.Second, d, float64(1500*time.Millisecond)) // HTTP-dates have whole seconds
	})

	t.Run("TooManyRequestsWithoutRetryAfter", func(t *testing.T) {
		t.Parallel()
		f, srv := fetchSetup(t, FetchConfig{}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "soon")
			w.WriteHeader(http.StatusTooManyRequests)
		})
		_, err := f.Fetch(ctx, FetchArgs{URL: srv.URL})
		requireRetryable(t, err)
		require.ErrorContains(t, err, "429 Too Many Requests")
	})

	t.Run("SlowSourceTimesOut", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		f, srv := fetchSetup(t, FetchConfig{Timeout: 200 * time.Millisecond}, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		t.Cleanup(func() { close(release) }) // runs before srv.Close, which waits for handlers
		_, err := f.Fetch(ctx, FetchArgs{URL: srv.URL})
		requireRetryable(t, err)
		require.ErrorContains(t, err, "timeout after 200ms")
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})

	t.Run("SlowBodyTimesOut", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		f, srv := fetchSetup(t, FetchConfig{Timeout: 200 * time.Millisecond}, func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("first part"))
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		t.Cleanup(func() { close(release) })
		_, err := f.Fetch(ctx, FetchArgs{URL: srv.URL})
		requireRetryable(t, err)
		require.ErrorContains(t, err, "timeout after 200ms")
	})

	t.Run("CallerCancelled", func(t *testing.T) {
		t.Parallel()
		f, srv := fetchSetup(t, FetchConfig{}, func(w http.ResponseWriter, r *http.Request) {})
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := f.Fetch(cctx, FetchArgs{URL: srv.URL})
		requireRetryable(t, err)
		require.ErrorIs(t, err, context.Canceled)
		require.NotContains(t, err.Error(), "timeout")
	})

	t.Run("ConnectionRefusedIsRetryable", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		_, err := NewFetcher(FetchConfig{AllowPrivate: true}).Fetch(ctx, FetchArgs{URL: url})
		requireRetryable(t, err)
		require.ErrorContains(t, err, "connection refused")
	})

	t.Run("OversizedBody", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name    string
			chunked bool
		}{{"ContentLength", false}, {"Chunked", true}} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				f, srv := fetchSetup(t, FetchConfig{MaxBody: 1024}, func(w http.ResponseWriter, r *http.Request) {
					body := []byte(strings.Repeat("x", 1025))
					if tc.chunked {
						w.(http.Flusher).Flush() // headers go out before the length is known
					} else {
						w.Header().Set("Content-Length", "1025")
					}
					_, _ = w.Write(body)
				})
				_, err := f.Fetch(ctx, FetchArgs{URL: srv.URL})
				require.True(t, baton.IsPermanent(err), "got %v", err)
				require.ErrorContains(t, err, "response body exceeds the limit of 1024 bytes (MaxBody)")
			})
		}
	})

	t.Run("BodyAtLimit", func(t *testing.T) {
		t.Parallel()
		f, srv := fetchSetup(t, FetchConfig{MaxBody: 1024}, func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(strings.Repeat("x", 1024)))
		})
		res, err := f.Fetch(ctx, FetchArgs{URL: srv.URL})
		require.NoError(t, err)
		require.Equal(t, 1024, res.Bytes)
	})

	t.Run("RedirectToMetadataRefused", func(t *testing.T) {
		t.Parallel()
		f, srv := fetchSetup(t, FetchConfig{}, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		})
		_, err := f.Fetch(ctx, FetchArgs{URL: srv.URL + "/innocent"})
		require.True(t, baton.IsPermanent(err), "got %v", err)
		// The refusal comes from the dialer's Control hook, which runs before
		// connect(2): nothing was sent to the metadata address.
		var refused *refusedError
		require.ErrorAs(t, err, &refused)
		require.EqualError(t, err, "fetch "+srv.URL+"/innocent: redirected to http://169.254.169.254/latest/meta-data/: "+
			"address 169.254.169.254 is link-local/metadata: refused")
	})

	t.Run("RedirectToFileRefused", func(t *testing.T) {
		t.Parallel()
		f, srv := fetchSetup(t, FetchConfig{}, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		})
		_, err := f.Fetch(ctx, FetchArgs{URL: srv.URL})
		require.True(t, baton.IsPermanent(err), "got %v", err)
		require.ErrorContains(t, err, `redirected to file:///etc/passwd: scheme "file" is not http or https: refused`)
	})

	t.Run("HostResolvingToMetadataRefused", func(t *testing.T) {
		t.Parallel()
		f := NewFetcher(FetchConfig{})
		var lookups atomic.Int32
		f.lookup = func(_ context.Context, host string) ([]net.IPAddr, error) {
			lookups.Add(1)
			require.Equal(t, "metadata.example.test", host)
			return []net.IPAddr{{IP: net.ParseIP("169.254.169.254")}}, nil
		}
		_, err := f.Fetch(ctx, FetchArgs{URL: "http://metadata.example.test/latest/meta-data/iam/"})
		require.True(t, baton.IsPermanent(err), "got %v", err)
		require.EqualError(t, err, "fetch http://metadata.example.test/latest/meta-data/iam/: "+
			"address 169.254.169.254 is link-local/metadata: refused")
		require.EqualValues(t, 1, lookups.Load())
	})

	t.Run("HostResolvingToAllowedAddress", func(t *testing.T) {
		t.Parallel()
		f, srv := fetchSetup(t, FetchConfig{}, func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(r.Host))
		})
		f.lookup = func(context.Context, string) ([]net.IPAddr, error) {
			// The first address is refused, the second one is dialled.
			return []net.IPAddr{{IP: net.ParseIP("169.254.169.254")}, {IP: net.ParseIP("127.0.0.1")}}, nil
		}
		_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
		require.NoError(t, err)
		res, err := f.Fetch(ctx, FetchArgs{URL: "http://api.example.test:" + port + "/"})
		require.NoError(t, err)
		require.Equal(t, "api.example.test:"+port, res.Text)
	})

	t.Run("PrivateRefusedByDefault", func(t *testing.T) {
		t.Parallel()
		var hits atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
		t.Cleanup(srv.Close)
		f := NewFetcher(FetchConfig{})
		t.Cleanup(f.CloseIdleConnections)
		_, err := f.Fetch(ctx, FetchArgs{URL: srv.URL})
		require.True(t, baton.IsPermanent(err), "got %v", err)
		require.EqualError(t, err, "fetch "+srv.URL+": address 127.0.0.1 is loopback: refused; "+
			"private and loopback addresses are refused unless allowed (FetchConfig.AllowPrivate; baton: BATON_FETCH_ALLOW_PRIVATE=true or --fetch-allow-private)")

		// Through the system resolver too: localhost is loopback whichever
		// family it resolves to.
		_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
		require.NoError(t, err)
		_, err = f.Fetch(ctx, FetchArgs{URL: "http://localhost:" + port})
		require.True(t, baton.IsPermanent(err), "got %v", err)
		require.ErrorContains(t, err, "is loopback: refused")
		require.ErrorContains(t, err, "BATON_FETCH_ALLOW_PRIVATE=true")
		for _, private := range []string{"10.0.0.1", "192.168.1.1", "172.16.0.1", "100.64.0.1"} {
			f.lookup = func(context.Context, string) ([]net.IPAddr, error) {
				return []net.IPAddr{{IP: net.ParseIP(private)}}, nil
			}
			_, err = f.Fetch(ctx, FetchArgs{URL: "http://internal.example.test:" + port})
			require.ErrorContains(t, err, "address "+private+" is ")
			require.ErrorContains(t, err, "FetchConfig.AllowPrivate")
		}
		require.Zero(t, hits.Load())
	})

	t.Run("AllowPrivateKeepsMetadataRefused", func(t *testing.T) {
		t.Parallel()
		f := NewFetcher(FetchConfig{AllowPrivate: true})
		f.lookup = func(context.Context, string) ([]net.IPAddr, error) {
			return []net.IPAddr{{IP: net.ParseIP("169.254.169.254")}}, nil
		}
		_, err := f.Fetch(ctx, FetchArgs{URL: "http://metadata.example.test/latest/"})
		require.EqualError(t, err, "fetch http://metadata.example.test/latest/: address 169.254.169.254 is link-local/metadata: refused")
	})

	t.Run("InvalidURLs", func(t *testing.T) {
		t.Parallel()
		f := NewFetcher(FetchConfig{})
		for _, tc := range []struct{ url, want string }{
			{"file:///etc/passwd", `fetch file:///etc/passwd: scheme "file" is not http or https: refused`},
			{"gopher://example.com/", `fetch gopher://example.com/: scheme "gopher" is not http or https: refused`},
			{"example.com/page", `fetch example.com/page: no scheme (only http and https are fetched): refused`},
			{"", `fetch "": invalid URL: empty`},
			{"http:///path", `fetch "http:///path": invalid URL: no host`},
			{"http://exa mple.com/", `fetch "http://exa mple.com/": invalid URL: invalid character " " in host name`},
		} {
			_, err := f.Fetch(ctx, FetchArgs{URL: tc.url})
			require.True(t, baton.IsPermanent(err), "%q: got %v", tc.url, err)
			require.EqualError(t, err, tc.want, tc.url)
		}
	})
}

func TestDeniedReason(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr   string
		reason string // "" when allowed
		always bool
	}{
		{"169.254.169.254", "link-local/metadata", true},
		{"169.254.0.1", "link-local/metadata", true},
		{"fe80::1", "link-local/metadata", true},
		{"fe80::1%eth0", "link-local/metadata", true},
		{"fd00:ec2::254", "link-local/metadata", true},
		{"::ffff:169.254.169.254", "link-local/metadata", true},
		{"64:ff9b::a9fe:a9fe", "link-local/metadata (via NAT64)", true},
		{"0.0.0.0", "unspecified", true},
		{"0.1.2.3", "unspecified", true},
		{"::", "unspecified", true},
		{"224.0.0.1", "multicast", true},
		{"ff02::1", "multicast", true},
		{"255.255.255.255", "broadcast", true},
		{"127.0.0.1", "loopback", false},
		{"127.8.9.10", "loopback", false},
		{"::1", "loopback", false},
		{"10.1.2.3", "private", false},
		{"172.16.0.1", "private", false},
		{"172.31.255.255", "private", false},
		{"192.168.1.1", "private", false},
		{"fc00::1", "private", false},
		{"fd12:3456::1", "private", false},
		{"100.64.0.1", "shared (CGNAT)", false},
		{"100.127.255.255", "shared (CGNAT)", false},
		{"64:ff9b::a00:1", "private (via NAT64)", false},
		{"8.8.8.8", "", false},
		{"172.32.0.1", "", false},
		{"100.128.0.1", "", false},
		{"2606:4700::1111", "", false},
		{"64:ff9b::808:808", "", false},
	} {
		reason, always := deniedReason(netip.MustParseAddr(tc.addr))
		require.Equal(t, tc.reason, reason, tc.addr)
		require.Equal(t, tc.always, always, tc.addr)
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"2", 2 * time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"99999999999999999999999", time.Duration(1<<63 - 1), true},
		{"Wed, 25 Nov 2026 12:00:30 GMT", 30 * time.Second, true}, // RFC 1123
		{"Wednesday, 25-Nov-26 12:01:00 GMT", time.Minute, true},  // RFC 850
		{"Wed Nov 25 12:00:05 2026", 5 * time.Second, true},       // ANSI C asctime
		{"Wed, 25 Nov 2026 11:00:00 GMT", 0, true},                // in the past
		{"", 0, false},
		{"-5", 0, false},
		{"+5", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"2026-11-25T12:00:30Z", 0, false},
	} {
		got, ok := parseRetryAfter(tc.in, now)
		require.Equal(t, tc.ok, ok, "%q", tc.in)
		require.Equal(t, tc.want, got, "%q", tc.in)
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, seed := range []string{"0", "2", "120", "-1", "1e3", "99999999999999999999",
		"Wed, 25 Nov 2026 12:00:30 GMT", "Wednesday, 25-Nov-26 12:01:00 GMT", "Wed Nov 25 12:00:05 2026", ""} {
		f.Add(seed)
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := parseRetryAfter(v, now)
		if !ok {
			if d != 0 {
				t.Fatalf("parseRetryAfter(%q) = %v, false; want 0 when not ok", v, d)
			}
			return
		}
		if d < 0 {
			t.Fatalf("parseRetryAfter(%q) = %v; want a non-negative delay", v, d)
		}
		s := strings.TrimSpace(v)
		if isDigits(s) {
			n, err := strconv.ParseInt(s, 10, 64)
			if err == nil && n <= int64(time.Duration(1<<63-1)/time.Second) && d != time.Duration(n)*time.Second {
				t.Fatalf("parseRetryAfter(%q) = %v; want %ds", v, d, n)
			}
			return
		}
		if _, err := http.ParseTime(s); err != nil {
			t.Fatalf("parseRetryAfter(%q) ok for a value that is neither seconds nor an HTTP-date", v)
		}
	})
}

// An error from the address check survives the client's wrapping.
func TestRefusedErrorUnwraps(t *testing.T) {
	t.Parallel()
	f := NewFetcher(FetchConfig{})
	_, err := f.Fetch(context.Background(), FetchArgs{URL: "http://[fd00:ec2::254]/latest/"})
	var refused *refusedError
	require.True(t, errors.As(err, &refused), "got %v", err)
	require.Equal(t, "fd00:ec2::254", refused.addr.String())
	require.True(t, baton.IsPermanent(err))
}
