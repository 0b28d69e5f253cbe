package admin

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// httptestGet runs one request through h in memory and returns the body.
// It asks for the endpoint by loopback address, as a browser on the box
// would (httptest's default Host, example.com, is refused).
func httptestGet(t *testing.T, h http.Handler, path string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://127.0.0.1:9090"+path, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
	}
	return rec.Body.String()
}
