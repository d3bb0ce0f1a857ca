package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
)

// rulesDir holds the alert rules and their unit tests.
var rulesDir = filepath.Join("..", "..", "deploy", "prometheus")

// The alert rules are valid and pass their unit tests, with the promtool of
// Debian's prometheus package (.ci/run installs it).
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Missing(t, "promtool not found (Debian package prometheus)")
	}
	for _, args := range [][]string{
		{"check", "rules", "staging.rules.yml"},
		{"test", "rules", "staging.rules.test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = rulesDir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// Every metric the alert rules name is one the system exposes: the
// all-in-one (all four services, with a hub so that the bridge runs) is
// scraped after a request and each staging_* name in the rules must be in
// the answer. A renamed metric would leave its alert silent for ever.
func TestAlertRulesUseExposedMetrics(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join(rulesDir, "staging.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	hub := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(hub.Close)
	t.Setenv("STAGING_JUPYTERHUB_URL", hub.URL)
	t.Setenv("STAGING_JUPYTERHUB_API_TOKEN", "unused")
	sys := startSystem(t, "", "")
	// A success and two failures (a missing source, a hub that answers
	// nothing), so that the per-outcome and per-code series exist.
	for _, req := range []struct{ method, source, want string }{
		{"local_copy", sampleFile, "succeeded"},
		{"local_copy", "no/such.fits", "failed"},
		{"jupyter_copy", sampleFile, "failed"},
	} {
		var sub struct{ ID string }
		if status := sys.postJSON(t, "/api/v1/stagings", map[string]string{
			"method": req.method, "username": "alice", "local_path_on_storage": req.source, "relative_path": "rules/" + req.want + ".txt",
		}, &sub); status != http.StatusAccepted {
			t.Fatalf("POST /api/v1/stagings %s = %d, want 202", req.method, status)
		}
		// The audit's own metrics are registered by then.
		sys.waitAudit(t, sub.ID, contract.Status(req.want))
	}

	resp, err := http.Get(sys.httpURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	exposed := map[string]bool{}
	for line := range strings.Lines(string(body)) {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			exposed[strings.Fields(name)[0]] = true
		}
	}
	// Every name, in expressions and in the text around them; a prefix
	// such as staging_queue_* in a comment ends in "_" and is left out.
	var named []string
	for _, name := range regexp.MustCompile(`\bstaging_[a-z_]+`).FindAllString(string(rules), -1) {
		if !strings.HasSuffix(name, "_") {
			named = append(named, name)
		}
	}
	slices.Sort(named)
	named = slices.Compact(named)
	if len(named) < 10 {
		t.Fatalf("found only %v in the rules: is the file read right?", named)
	}
	for _, name := range named {
		if !exposed[name] {
			t.Errorf("the rules name %s, which /metrics does not expose", name)
		}
	}
}
