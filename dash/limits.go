package dash

import (
	"net/http"

	"github.com/batonhq/baton/backend"
)

// The flow-control page: every limit live workers enforce, its usage and
// how many tasks wait on it (the same as `baton inspect`).

type limitsData struct {
	Limits []backend.LimitState `json:"limits"`
}

func (s *server) loadLimits(r *http.Request) (*limitsData, error) {
	ls, err := backend.ReadLimits(r.Context(), s.rdb)
	if err != nil {
		return nil, err
	}
	if ls == nil {
		ls = []backend.LimitState{}
	}
	return &limitsData{Limits: ls}, nil
}

func (s *server) limits(w http.ResponseWriter, r *http.Request) {
	d, err := s.loadLimits(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, "limits", d)
}

func (s *server) limitsJSON(w http.ResponseWriter, r *http.Request) {
	d, err := s.loadLimits(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, d)
}
