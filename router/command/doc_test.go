package command

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated part of docs/commands.md")

const (
	docPath  = "../../docs/commands.md"
	docBegin = "<!-- BEGIN GENERATED: go test ./router/command -run TestCommandsDoc -update -->\n"
	docEnd   = "<!-- END GENERATED -->\n"
)

// TestCommandsDoc keeps docs/commands.md's table in step with the command table.
func TestCommandsDoc(t *testing.T) {
	b, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, docBegin), strings.Index(doc, docEnd)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the generated-section markers", docPath)
	}
	want := doc[:i+len(docBegin)] + Markdown() + doc[j:]
	if want == doc {
		return
	}
	if *update {
		if err := os.WriteFile(docPath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("%s is out of date: run go test ./router/command -run TestCommandsDoc -update", docPath)
}
