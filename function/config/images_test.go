package config_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/qci-appci/qci-appci/function/config"
)

func TestOpenImagesAndFlatRepository(t *testing.T) {
	setValid(t)
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !c.FlatRepository || len(c.OpenImages) != 0 || !config.Defaults().FlatRepository {
		t.Errorf("defaults: flat %v, open %q; want the flat repository on and nothing open", c.FlatRepository, c.OpenImages)
	}
	t.Setenv("QCI_OPEN_IMAGES", "ci, ocp/release")
	t.Setenv("QCI_FLAT_REPOSITORY", "false")
	if c, err = config.Load(); err != nil {
		t.Fatal(err)
	}
	if c.FlatRepository || !slices.Equal(c.OpenImages, []string{"ci", "ocp/release"}) {
		t.Errorf("flat %v, open %q", c.FlatRepository, c.OpenImages)
	}
	t.Setenv("QCI_OPEN_IMAGES", "ci,a/b/c,ci/a_b,Ocp")
	t.Setenv("QCI_FLAT_REPOSITORY", "nope")
	_, err = config.Load()
	for _, want := range []string{`QCI_OPEN_IMAGES: "a/b/c"`, `QCI_OPEN_IMAGES: "ci/a_b"`, `QCI_OPEN_IMAGES: "Ocp"`, "QCI_FLAT_REPOSITORY"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), `"ci" is`) {
		t.Errorf("a namespace was refused: %v", err)
	}
}
