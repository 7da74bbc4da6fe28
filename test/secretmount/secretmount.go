// Package secretmount writes a directory the way the kubelet writes a
// mounted Secret volume (pkg/volume/util/atomic_writer.go): the files live
// in a timestamped directory, ..data is a symlink to it, and each key is a
// symlink through ..data. An update writes a new timestamped directory and
// renames a new symlink over ..data, so a reader sees the old files or the
// new ones, never a mix.
package secretmount

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

const dataDir = "..data"

// Write makes dir hold files (key → contents) as a fresh Secret mount, or
// updates it in place as the kubelet does when the Secret changes.
func Write(dir string, files map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("secretmount: %w", err)
	}
	old, _ := os.Readlink(filepath.Join(dir, dataDir))
	ts, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return fmt.Errorf("secretmount: %w", err)
	}
	for key, contents := range files {
		if err := os.WriteFile(filepath.Join(ts, key), []byte(contents), 0o644); err != nil {
			return fmt.Errorf("secretmount: %w", err)
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return fmt.Errorf("secretmount: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, dataDir)); err != nil {
		return fmt.Errorf("secretmount: swap ..data: %w", err)
	}
	for key := range files {
		link := filepath.Join(dir, key)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join(dataDir, key), link); err != nil {
				return fmt.Errorf("secretmount: %w", err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			return fmt.Errorf("secretmount: remove the old data: %w", err)
		}
	}
	return nil
}
