package dashboard

import (
	"io"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, path string) (int, string, string) {
	t.Helper()
	w := httptest.NewRecorder()
	Handler().ServeHTTP(w, httptest.NewRequest("GET", path, nil))
	b, _ := io.ReadAll(w.Result().Body)
	return w.Code, w.Header().Get("Content-Type"), string(b)
}

func TestHandlerServesThePage(t *testing.T) {
	for path, typ := range map[string]string{"/": "text/html", "/ui/app.js": "text/javascript", "/ui/style.css": "text/css"} {
		code, ct, body := get(t, path)
		if code != 200 || !strings.HasPrefix(ct, typ) || len(body) < 500 {
			t.Errorf("GET %s: %d %q, %d bytes", path, code, ct, len(body))
		}
	}
	for _, path := range []string{"/ui/", "/ui/nope.js", "/ui/../dashboard.go", "/ui/x/app.js"} {
		if code, _, _ := get(t, path); code != 404 {
			t.Errorf("GET %s: %d, want 404", path, code)
		}
	}
}

// TestPageIsSelfContained checks that the page loads nothing from elsewhere: every src and
// href is this node's, and the script calls only relative API paths.
func TestPageIsSelfContained(t *testing.T) {
	_, _, html := get(t, "/")
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(html, -1) {
		if !strings.HasPrefix(m[1], "/ui/") && m[1] != "data:," {
			t.Errorf("index.html refers to %q", m[1])
		}
	}
	for _, name := range []string{"/ui/app.js", "/ui/style.css"} {
		_, _, body := get(t, name)
		if regexp.MustCompile(`(?i)https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import`).MatchString(body) {
			t.Errorf("%s refers to another host", name)
		}
	}
	_, _, js := get(t, "/ui/app.js")
	if strings.Contains(js, "innerHTML") || strings.Contains(js, "localStorage") {
		t.Error("app.js uses innerHTML or localStorage: values go in as text, the token stays in the tab")
	}
}
