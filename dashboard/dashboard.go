// Package dashboard serves redraft's web dashboard: one static page, embedded in the binary,
// that every node serves on admin_listen and that reads and changes the cluster only through
// the admin API of the node that served it, with the token the user types in.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
)

//go:embed assets
var assets embed.FS

// files are the assets, without the folder prefix.
var files = func() fs.FS {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err)
	}
	return sub
}()

// Handler serves the page at / and its files at /ui/NAME. The files hold no cluster data, so
// the node serves them without the admin token; every API call the page makes carries it.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := "index.html"
		if r.URL.Path != "/" {
			name = path.Base(r.URL.Path)
			if "/ui/"+name != r.URL.Path {
				http.NotFound(w, r)
				return
			}
		}
		b, err := fs.ReadFile(files, name)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		// Nothing from elsewhere: scripts, styles and API calls from this node only.
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Type", contentType(name))
		_, _ = w.Write(b)
	})
}

// contentType is the type of an asset, by its extension.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	}
	return "application/octet-stream"
}
