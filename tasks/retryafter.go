package tasks

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// retryAfterHeader reads how long a response asks the client to wait before
// trying again, the one rule of fetch and analyze: Retry-After-Ms (whole or
// fractional milliseconds, as OpenAI and Azure send it), else Retry-After
// (parseRetryAfter), whose HTTP-date is measured against the response's
// Date, the server's clock, when it has one, else against now. ok is false
// when neither header holds such a value. Callers cap the delay.
func retryAfterHeader(h http.Header, now time.Time) (d time.Duration, ok bool) {
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		ms, err := strconv.ParseFloat(v, 64)
		if err != nil || ms < 0 || math.IsNaN(ms) {
			return 0, false
		}
		if ms >= float64(math.MaxInt64/time.Millisecond) {
			return time.Duration(math.MaxInt64), true
		}
		return time.Duration(ms * float64(time.Millisecond)), true
	}
	if date, err := http.ParseTime(h.Get("Date")); err == nil {
		now = date
	}
	return parseRetryAfter(h.Get("Retry-After"), now)
}

// parseRetryAfter reads a Retry-After value: delay-seconds (digits only) or
// an HTTP-date (RFC 9110, section 10.2.3), the latter measured from now. A
// date in the past gives 0; a delay too large for a Duration saturates. ok
// is false when the value is neither.
func parseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if isDigits(v) {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs > math.MaxInt64/int64(time.Second) {
			return time.Duration(math.MaxInt64), true // only digits: the error is a range error
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
