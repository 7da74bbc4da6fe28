package deploy_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
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
	if v.Type().FriendlyName() == "number" {
		return v.AsBigFloat().String()
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
	if len(containers) != 1 {
		t.Fatal("want one container")
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
