package main

// One test: traffic, a real Prometheus, and every dashboard expression
// run against it; the template expansion it needs lives beside it.

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
)

// dashboardFile is the project's Grafana dashboard.
var dashboardFile = filepath.Join("..", "..", "deploy", "grafana", "dashboards", "skao-staging.json")

// Every expression of the Grafana dashboard returns data from a real
// Prometheus (Debian's prometheus package; .ci/run installs it) that
// scrapes the all-in-one after some traffic of every kind, in two rounds
// so that rates and quantiles have something to measure: a panel whose
// query names a metric nobody exposes, a label nobody sets or a series that
// only exists once something went wrong, shows "No data" and fails here.
// Prometheus also loads the alert rules, so the ALERTS panels have their
// series, and every rule must evaluate without error on real data.
func TestDashboardQueriesReturnData(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		testenv.Missing(t, "prometheus not found (Debian package prometheus)")
	}
	exprs := dashboardExprs(t)

	hub := httptest404(t)
	t.Setenv("STAGING_JUPYTERHUB_URL", hub)
	t.Setenv("STAGING_JUPYTERHUB_API_TOKEN", "unused")
	sys := startSystem(t, "", "")
	dashboardTraffic(t, sys, 1)

	prom := startPrometheus(t, promBin, strings.TrimPrefix(sys.httpURL, "http://"))
	testenv.Eventually(t, 30*time.Second, "Prometheus to scrape stagingd", func() bool {
		v, err := prom.query(`up{job="stagingd"}`)
		return err == nil && len(v) == 1 && v[0] == 1
	})
	dashboardTraffic(t, sys, 2)
	after := float64(time.Now().UnixMilli()) / 1000
	testenv.Eventually(t, 30*time.Second, "Prometheus to scrape stagingd after the traffic", func() bool {
		v, err := prom.query(`max(timestamp(up{job="stagingd"}))`)
		return err == nil && len(v) == 1 && v[0] > after
	})

	for _, e := range exprs {
		v, err := prom.query(e.expr)
		switch {
		case err != nil:
			t.Errorf("panel %q: %s: %v", e.panel, e.expr, err)
		case len(v) == 0:
			t.Errorf("panel %q: no data from %s", e.panel, e.expr)
		case allNaN(v):
			t.Errorf("panel %q: only NaN from %s", e.panel, e.expr)
		case e.panel == "HTTP 5xx ratio" && (len(v) != 1 || v[0] != 0):
			// The traffic had no 5xx: the panel must say 0, not nothing.
			t.Errorf("panel %q: %v from %s, want one 0", e.panel, v, e.expr)
		}
	}
	prom.checkRules(t)
}

// dashboardExpr is one target of a panel, its variables substituted.
type dashboardExpr struct{ panel, expr string }

// dashboardExprs reads every target expression of the dashboard and
// substitutes its variables as Grafana would for a view of the test's
// traffic: the rate window spans the whole test (as a dashboard's range
// spans the activity it shows), the dashboard's own variables take their
// current value, or match everything when that is All.
func dashboardExprs(t *testing.T) []dashboardExpr {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var dash struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name    string `json:"name"`
				Type    string `json:"type"`
				Current struct {
					Value any `json:"value"`
				} `json:"current"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	vars := map[string]string{
		"__rate_interval": "5m", "__interval": "15s", "__range": "5m",
		"__interval_ms": "15000", "__range_s": "300", "__range_ms": "300000",
	}
	for _, v := range dash.Templating.List {
		value, _ := v.Current.Value.(string)
		if value == "" || value == "$__all" {
			value = ".*"
		}
		vars[v.Name] = value
	}
	var out []dashboardExpr
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q has a target without an expression", p.Title)
					continue
				}
				e, err := expandVars(tg.Expr, vars)
				if err != nil {
					t.Errorf("panel %q: %v", p.Title, err)
					continue
				}
				out = append(out, dashboardExpr{p.Title, e})
			}
			// A collapsed row holds its panels.
			var nested []panel
			for _, raw := range p.Panels {
				var np panel
				if err := json.Unmarshal(raw, &np); err != nil {
					t.Fatalf("panel %q: %v", p.Title, err)
				}
				nested = append(nested, np)
			}
			walk(nested)
		}
	}
	walk(dash.Panels)
	if len(out) < 20 {
		t.Fatalf("found only %d expressions in %s: is the file read right?", len(out), dashboardFile)
	}
	return out
}

// grafanaVar matches $name, ${name}, ${name:format} and [[name]].
var grafanaVar = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)`)

// expandVars substitutes the Grafana variables of expr from vars; a
// variable it does not know is an error, so that a new one is given a
// value here rather than sent to Prometheus as text.
func expandVars(expr string, vars map[string]string) (string, error) {
	var unknown []string
	out := grafanaVar.ReplaceAllStringFunc(expr, func(m string) string {
		sub := grafanaVar.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[3]
		v, ok := vars[name]
		if !ok {
			unknown = append(unknown, m)
			return m
		}
		return v
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("variables %v in %s have no value in the test", unknown, expr)
	}
	return out, nil
}

func TestExpandVars(t *testing.T) {
	vars := map[string]string{"__rate_interval": "5m", "service": ".*"}
	tests := []struct{ in, want string }{
		{`rate(x{service=~"$service"}[$__rate_interval])`, `rate(x{service=~".*"}[5m])`},
		{`rate(x{service=~"${service}"}[${__rate_interval}])`, `rate(x{service=~".*"}[5m])`},
		{`rate(x{service=~"${service:regex}"}[[[__rate_interval]]])`, `rate(x{service=~".*"}[5m])`},
		{`sum(x)`, `sum(x)`},
	}
	for _, tt := range tests {
		got, err := expandVars(tt.in, vars)
		if err != nil || got != tt.want {
			t.Errorf("expandVars(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if got, err := expandVars(`x{instance="$instance"}`, vars); err == nil {
		t.Errorf("expandVars with an unknown variable = %q, want an error", got)
	}
}

// dashboardTraffic sends one request of each kind the panels show, and
// waits until each has ended in the audit: a copy, a copy of a missing
// source (failed), a jupyter_copy the hub refuses (failed), and a
// direct_download whose link is fetched.
func dashboardTraffic(t *testing.T, sys running, round int) {
	t.Helper()
	for _, req := range []struct {
		method, source string
		want           contract.Status
	}{
		{"local_copy", sampleFile, contract.StatusSucceeded},
		{"local_copy", "no/such.fits", contract.StatusFailed},
		{"jupyter_copy", sampleFile, contract.StatusFailed},
		{"direct_download", sampleFile, contract.StatusSucceeded},
	} {
		var sub struct{ ID string }
		rel := fmt.Sprintf("dashboard/%d/%s-%s.txt", round, req.method, req.want)
		if status := sys.postJSON(t, "/api/v1/stagings", map[string]string{
			"method": req.method, "username": "alice", "local_path_on_storage": req.source, "relative_path": rel,
		}, &sub); status != http.StatusAccepted {
			t.Fatalf("POST /api/v1/stagings %s = %d, want 202", req.method, status)
		}
		sys.waitAudit(t, sub.ID, req.want)
		if req.method != "direct_download" {
			continue
		}
		link, _ := sys.waitStatus(t, sub.ID, "succeeded")["download_url"].(string)
		if !strings.HasPrefix(link, "http") {
			link = sys.httpURL + link
		}
		resp, err := http.Get(link)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET download link = %d, want 200", resp.StatusCode)
		}
	}
}

// httptest404 is a hub that answers nothing but 404: the bridge runs, and
// its jupyter_copy requests fail.
func httptest404(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// promServer is a started Prometheus server.
type promServer struct{ url string }

// startPrometheus runs bin scraping target's /metrics every second, with
// the project's alert rules, until the test ends.
func startPrometheus(t *testing.T, bin, target string) promServer {
	t.Helper()
	dir := t.TempDir()
	rules, err := filepath.Abs(filepath.Join(rulesDir, "staging.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: stagingd
    static_configs:
      - targets: [%q]
        labels: {service: stagingd}
`, rules, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	// Prometheus cannot listen on port 0 and say which it took: a port
	// free a moment ago it is.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	logPath := filepath.Join(dir, "prometheus.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		logFile.Close()
		if t.Failed() {
			if log, err := os.ReadFile(logPath); err == nil {
				t.Logf("prometheus log:\n%s", log)
			}
		}
	})
	p := promServer{url: "http://" + addr}
	testenv.Eventually(t, 30*time.Second, "Prometheus to be ready on "+addr, func() bool {
		resp, err := http.Get(p.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// query evaluates expr now and returns the value of each series.
func (p promServer) query(expr string) ([]float64, error) {
	var reply struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string            `json:"resultType"`
			Result     []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := p.get("/api/v1/query?query="+url.QueryEscape(expr), &reply); err != nil {
		return nil, err
	}
	if reply.Status != "success" {
		return nil, fmt.Errorf("query failed: %s", reply.Error)
	}
	if reply.Data.ResultType != "vector" {
		return nil, fmt.Errorf("result type %s, want vector", reply.Data.ResultType)
	}
	var values []float64
	for _, raw := range reply.Data.Result {
		var s struct {
			Value [2]any `json:"value"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		text, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return nil, fmt.Errorf("sample %s: %w", raw, err)
		}
		values = append(values, v)
	}
	return values, nil
}

// checkRules fails the test for each rule whose last evaluation failed.
func (p promServer) checkRules(t *testing.T) {
	t.Helper()
	var reply struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := p.get("/api/v1/rules", &reply); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range reply.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health == "err" {
				t.Errorf("rule %s: %s", r.Name, r.LastError)
			}
		}
	}
	if n == 0 {
		t.Error("Prometheus loaded no rules")
	}
}

func (p promServer) get(path string, out any) error {
	resp, err := http.Get(p.url + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("GET %s: %d, not JSON: %w", path, resp.StatusCode, err)
	}
	return nil
}

func allNaN(v []float64) bool {
	for _, x := range v {
		if !math.IsNaN(x) {
			return false
		}
	}
	return true
}
