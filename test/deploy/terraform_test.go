package deploy_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"

	"github.com/qci-appci/qci-appci/function/config"
	"github.com/qci-appci/qci-appci/test/deploy"
)

func tfFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../terraform/*.tf")
	if err != nil || len(files) < 4 {
		t.Fatalf("terraform files: %v %v", files, err)
	}
	return files
}

// cloudRunService returns the google_cloud_run_v2_service resource's body.
func cloudRunService(t *testing.T) *hclsyntax.Body {
	t.Helper()
	p := hclparse.NewParser()
	var found *hclsyntax.Body
	for _, f := range tfFiles(t) {
		file, diags := p.ParseHCLFile(f)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", f, diags)
		}
		for _, b := range file.Body.(*hclsyntax.Body).Blocks {
			if b.Type == "resource" && len(b.Labels) == 2 && b.Labels[0] == "google_cloud_run_v2_service" {
				found = b.Body
			}
		}
	}
	if found == nil {
		t.Fatal("no google_cloud_run_v2_service resource")
	}
	return found
}

func blocks(b *hclsyntax.Body, typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, blk := range b.Blocks {
		if blk.Type == typ {
			out = append(out, blk)
		}
		// dynamic "env" { content { … } } counts as the block it makes.
		if blk.Type == "dynamic" && len(blk.Labels) == 1 && blk.Labels[0] == typ {
			for _, c := range blk.Body.Blocks {
				if c.Type == "content" {
					out = append(out, &hclsyntax.Block{Type: typ, Body: c.Body})
				}
			}
		}
	}
	return out
}

func literal(t *testing.T, b *hclsyntax.Body, attr string) string {
	t.Helper()
	a, ok := b.Attributes[attr]
	if !ok {
		t.Fatalf("no attribute %s", attr)
	}
	v, diags := a.Expr.Value(&hcl.EvalContext{})
	if diags.HasErrors() {
		t.Fatalf("%s is not a literal: %v", attr, diags)
	}
	switch v.Type().FriendlyName() {
	case "number":
		return v.AsBigFloat().String()
	case "bool":
		return strconv.FormatBool(v.True())
	}
	return v.AsString()
}

func TestCloudRunService(t *testing.T) {
	svc := cloudRunService(t)
	tmpl := blocks(svc, "template")
	if len(tmpl) != 1 {
		t.Fatal("no template block")
	}
	scaling := blocks(tmpl[0].Body, "scaling")
	if len(scaling) != 1 || literal(t, scaling[0].Body, "min_instance_count") != "0" {
		t.Error("min_instance_count must be 0 (scale to zero)")
	}
	containers := blocks(tmpl[0].Body, "containers")
	if len(containers) == 0 || literal(t, containers[0].Body, "name") != "qci-appci" {
		t.Fatal("want the qci-appci container first")
	}
	ports := blocks(containers[0].Body, "ports")
	if len(ports) != 1 || literal(t, ports[0].Body, "name") != "h2c" {
		t.Error("the container port must be named h2c")
	}
	known := deploy.EnvNames()
	set := map[string]bool{}
	for _, env := range blocks(containers[0].Body, "env") {
		name := literal(t, env.Body, "name")
		if _, ok := known[name]; !ok {
			t.Errorf("env %s is not a variable of the config package", name)
		}
		if known[name] && name[len(name)-5:] != "_FILE" {
			t.Errorf("secret %s given inline", name)
		}
		set[name] = true
	}
	for _, s := range config.SecretEnvNames() {
		if !set[s+"_FILE"] {
			t.Errorf("%s_FILE is not set", s)
		}
	}
	for _, probe := range []string{"startup_probe", "liveness_probe"} {
		if len(blocks(containers[0].Body, probe)) != 1 {
			t.Errorf("no %s", probe)
		}
	}
}

func TestTerraformFormatted(t *testing.T) {
	for _, f := range tfFiles(t) {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if out := hclwrite.Format(src); !bytes.Equal(out, src) {
			t.Errorf("%s is not formatted (terraform fmt)", f)
		}
	}
}

// TestTerraformCLI runs terraform fmt where terraform is installed; validate
// needs the provider, which cannot be downloaded here.
func TestTerraformCLI(t *testing.T) {
	tf, err := exec.LookPath("terraform")
	if err != nil {
		t.Skip("terraform is not installed; the HCL checks above still ran")
	}
	cmd := exec.Command(tf, "fmt", "-check", "-recursive", "-diff", ".")
	cmd.Dir = "../../terraform"
	cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE=/dev/null")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("terraform fmt -check: %v\n%s", err, out)
	}
}

// TestCloudRunDeletionProtection checks that deletion_protection is set on
// purpose, from a variable that says so, and defaults to protecting.
func TestCloudRunDeletionProtection(t *testing.T) {
	a, ok := cloudRunService(t).Attributes["deletion_protection"]
	if !ok {
		t.Fatal("deletion_protection is left to the provider's default")
	}
	if tr := a.Expr.Variables(); len(tr) != 1 || tr[0].RootName() != "var" {
		t.Fatalf("deletion_protection is not a variable")
	}
	v := variableBlock(t, "deletion_protection")
	if v == nil {
		t.Fatal("no variable deletion_protection")
	}
	if got := literal(t, v, "default"); got != "true" {
		t.Errorf("deletion_protection defaults to %s", got)
	}
}

// TestCloudRunPrometheusSidecar checks the optional Managed Service for
// Prometheus sidecar: it scrapes the port QCI_METRICS_PORT names, through
// a RunMonitoring mounted where the collector reads it, starts after the
// service's container, and metrics are off without it.
func TestCloudRunPrometheusSidecar(t *testing.T) {
	svc := cloudRunService(t)
	tmpl := blocks(svc, "template")[0]
	containers := blocks(tmpl.Body, "containers")
	if len(containers) != 2 {
		t.Fatalf("%d containers: want qci-appci and the optional sidecar", len(containers))
	}
	side := containers[1].Body
	if literal(t, side, "name") != "prometheus-collector" {
		t.Errorf("sidecar named %s", literal(t, side, "name"))
	}
	if deps := exprSource(t, side.Attributes["depends_on"].Expr); deps != `["qci-appci"]` {
		t.Errorf("sidecar depends_on %s", deps)
	}
	mounts := blocks(side, "volume_mounts")
	if len(mounts) != 1 || literal(t, mounts[0].Body, "mount_path") != "/etc/rungmp" {
		t.Errorf("the sidecar does not mount its config at /etc/rungmp")
	}
	var configVolume bool
	for _, v := range blocks(tmpl.Body, "volumes") {
		if literal(t, v.Body, "name") == literal(t, mounts[0].Body, "name") {
			items := blocks(blocks(v.Body, "secret")[0].Body, "items")
			configVolume = len(items) == 1 && literal(t, items[0].Body, "path") == "config.yaml"
		}
	}
	if !configVolume {
		t.Error("no volume puts the RunMonitoring at config.yaml")
	}
	if dyn := dynamicFor(tmpl.Body, "containers"); dyn == nil || !strings.Contains(exprSource(t, dyn), "var.prometheus_sidecar") {
		t.Error("the sidecar is not optional on var.prometheus_sidecar")
	}
	var metricsEnv string
	for _, env := range blocks(containers[0].Body, "env") {
		if literal(t, env.Body, "name") == "QCI_METRICS_PORT" {
			metricsEnv = exprSource(t, env.Body.Attributes["value"].Expr)
		}
	}
	if metricsEnv != `var.prometheus_sidecar ? tostring(var.metrics_port) : "0"` {
		t.Errorf("QCI_METRICS_PORT = %q", metricsEnv)
	}
	// The RunMonitoring scrapes var.metrics_port at /metrics.
	version := resourceBlock(t, "google_secret_manager_secret_version", "prometheus_config")
	data := exprSource(t, version.Attributes["secret_data"].Expr)
	for _, want := range []string{`kind       = "RunMonitoring"`, `port = var.metrics_port`, `path = "/metrics"`} {
		if !strings.Contains(data, want) {
			t.Errorf("RunMonitoring lacks %s:\n%s", want, data)
		}
	}
	if resourceBlock(t, "google_project_iam_member", "metric_writer") == nil {
		t.Error("the service account may not write metrics")
	}
}

// parsedFiles parses every .tf file.
func parsedFiles(t *testing.T) []*hclsyntax.Body {
	t.Helper()
	p := hclparse.NewParser()
	var out []*hclsyntax.Body
	for _, f := range tfFiles(t) {
		file, diags := p.ParseHCLFile(f)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", f, diags)
		}
		out = append(out, file.Body.(*hclsyntax.Body))
	}
	return out
}

func resourceBlock(t *testing.T, typ, name string) *hclsyntax.Body {
	t.Helper()
	for _, body := range parsedFiles(t) {
		for _, b := range body.Blocks {
			if b.Type == "resource" && len(b.Labels) == 2 && b.Labels[0] == typ && b.Labels[1] == name {
				return b.Body
			}
		}
	}
	t.Fatalf("no resource %s.%s", typ, name)
	return nil
}

func variableBlock(t *testing.T, name string) *hclsyntax.Body {
	t.Helper()
	for _, body := range parsedFiles(t) {
		for _, b := range body.Blocks {
			if b.Type == "variable" && len(b.Labels) == 1 && b.Labels[0] == name {
				return b.Body
			}
		}
	}
	return nil
}

// dynamicFor is the for_each of the dynamic block making typ blocks.
func dynamicFor(b *hclsyntax.Body, typ string) hclsyntax.Expression {
	for _, blk := range b.Blocks {
		if blk.Type == "dynamic" && len(blk.Labels) == 1 && blk.Labels[0] == typ {
			if a, ok := blk.Body.Attributes["for_each"]; ok {
				return a.Expr
			}
		}
	}
	return nil
}

// exprSource is an expression's text as written.
func exprSource(t *testing.T, e hclsyntax.Expression) string {
	t.Helper()
	r := e.Range()
	src, err := os.ReadFile(r.Filename)
	if err != nil {
		t.Fatal(err)
	}
	return string(src[r.Start.Byte:r.End.Byte])
}
