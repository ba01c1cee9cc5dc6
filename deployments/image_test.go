package deployments_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// imageConfig is the part of `podman image inspect` the image checks read.
type imageConfig struct {
	User       string            `json:"User"`
	Entrypoint []string          `json:"Entrypoint"`
	Cmd        []string          `json:"Cmd"`
	Labels     map[string]string `json:"Labels"`
}

// ociLabels are the org.opencontainers.image.* labels the image must carry.
var ociLabels = []string{"title", "description", "source", "version", "revision", "licenses", "created"}

var numericUser = regexp.MustCompile(`^([0-9]+)(:([0-9]+))?$`)

// imageProblems checks an image's configuration: the binary as entrypoint,
// a numeric non-root user, and every OCI label (the version label being
// version).
func imageProblems(c imageConfig, version string) []string {
	var p []string
	if len(c.Entrypoint) != 1 || c.Entrypoint[0] != "/usr/local/bin/tokenwarden" {
		p = append(p, fmt.Sprintf("entrypoint is %q, want [/usr/local/bin/tokenwarden]", c.Entrypoint))
	}
	m := numericUser.FindStringSubmatch(c.User)
	switch {
	case m == nil:
		p = append(p, fmt.Sprintf("user %q is not numeric uid:gid (Kubernetes cannot check runAsNonRoot on a name)", c.User))
	case m[1] == "0" || m[3] == "0":
		p = append(p, fmt.Sprintf("user %q is root", c.User))
	}
	for _, l := range ociLabels {
		k := "org.opencontainers.image." + l
		if strings.TrimSpace(c.Labels[k]) == "" {
			p = append(p, "label "+k+" is missing")
		}
	}
	if v := c.Labels["org.opencontainers.image.version"]; v != "" && v != version {
		p = append(p, fmt.Sprintf("version label %q, want %q", v, version))
	}
	if v := c.Labels["org.opencontainers.image.created"]; v != "" {
		if _, err := time.Parse(time.RFC3339, v); err != nil {
			p = append(p, fmt.Sprintf("created label %q is not RFC 3339", v))
		}
	}
	return p
}

// TestImageChecksCatchProblems plants bad image configurations: the checks
// of TestImage must report each.
func TestImageChecksCatchProblems(t *testing.T) {
	good := imageConfig{User: "65532:65532", Entrypoint: []string{"/usr/local/bin/tokenwarden"}, Labels: map[string]string{}}
	for _, l := range ociLabels {
		good.Labels["org.opencontainers.image."+l] = "x"
	}
	good.Labels["org.opencontainers.image.version"] = "v1"
	good.Labels["org.opencontainers.image.created"] = "2026-01-02T03:04:05Z"
	if p := imageProblems(good, "v1"); len(p) != 0 {
		t.Fatalf("a good configuration has problems: %v", p)
	}
	bad := map[string]func(c *imageConfig){
		"root user":        func(c *imageConfig) { c.User = "0:0" },
		"root group":       func(c *imageConfig) { c.User = "65532:0" },
		"named user":       func(c *imageConfig) { c.User = "nonroot" },
		"no user":          func(c *imageConfig) { c.User = "" },
		"shell entrypoint": func(c *imageConfig) { c.Entrypoint = []string{"/bin/sh", "-c"} },
		"missing label":    func(c *imageConfig) { delete(c.Labels, "org.opencontainers.image.revision") },
		"wrong version":    func(c *imageConfig) { c.Labels["org.opencontainers.image.version"] = "dev" },
		"bad created":      func(c *imageConfig) { c.Labels["org.opencontainers.image.created"] = "yesterday" },
	}
	for name, plant := range bad {
		c := good
		c.Labels = map[string]string{}
		for k, v := range good.Labels {
			c.Labels[k] = v
		}
		plant(&c)
		if p := imageProblems(c, "v1"); len(p) == 0 {
			t.Errorf("%s: not caught", name)
		}
	}
}

// TestImage builds the image with `make image` (a version stamp of its
// own, a temporary build context), then checks it without running a
// container: podman image inspect, and podman image save with the layers
// unpacked, the binary static and its `version` run on the host.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and the image; skipped with -short")
	}
	podman := tool(t, "podman")
	mk := tool(t, "make")
	root := repoRoot(t)
	version := fmt.Sprintf("v0.0.0-imagetest.%d", os.Getpid())
	repo := "localhost/tokenwarden-imagetest"
	ref := repo + ":" + version
	ctxDir := t.TempDir()
	t.Cleanup(func() {
		if out, err := runErr(root, nil, podman, "rmi", "-f", ref); err != nil {
			t.Logf("podman rmi %s: %v\n%s", ref, err, out)
		}
	})
	run(t, root, nil, mk, "-s", "image", "IMAGE="+repo, "VERSION="+version, "REVISION=0123456789abcdef", "IMAGE_CONTEXT="+ctxDir)

	var inspected []struct {
		Config imageConfig `json:"Config"`
	}
	if err := json.Unmarshal(run(t, root, nil, podman, "image", "inspect", ref), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("podman image inspect %s: %v (%d images)", ref, err, len(inspected))
	}
	for _, p := range imageProblems(inspected[0].Config, version) {
		t.Error(p)
	}

	archive := filepath.Join(t.TempDir(), "image.tar")
	run(t, root, nil, podman, "image", "save", "--format", "docker-archive", "-o", archive, ref)
	fs := t.TempDir()
	files := unpackImage(t, archive, fs)
	want := map[string]bool{"usr/local/bin/tokenwarden": true, "etc/ssl/certs/ca-certificates.crt": true}
	for f := range files {
		if !want[f] {
			t.Errorf("unexpected file in the image: %s (the image holds the binary and the CA bundle only)", f)
		}
	}
	for f := range want {
		if !files[f] {
			t.Errorf("%s is missing from the image", f)
		}
	}
	if fi, err := os.Stat(filepath.Join(fs, "etc/ssl/certs/ca-certificates.crt")); err != nil || fi.Size() < 10000 {
		t.Errorf("CA bundle missing or too small: %v", err)
	}

	bin := filepath.Join(fs, "usr/local/bin/tokenwarden")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("the image's binary is not ELF: %v", err)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Error("the image's binary is dynamically linked (has an ELF interpreter); the image has no libc")
		}
	}
	f.Close()
	out := run(t, root, nil, bin, "version")
	if got, want := strings.TrimSpace(string(out)), "tokenwarden "+version; got != want {
		t.Errorf("the image's binary prints %q, want %q", got, want)
	}
}

// unpackImage unpacks the layers of a docker-archive into dir, in order,
// and returns the regular files it holds (slash paths, relative).
func unpackImage(t *testing.T, archive, dir string) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	entries := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("image archive: %v", err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			entries[path.Clean(h.Name)] = b
		}
	}
	var manifest []struct{ Layers []string }
	if err := json.Unmarshal(entries["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("image archive manifest.json: %v", err)
	}
	files := map[string]bool{}
	for _, l := range manifest[0].Layers {
		layer, ok := entries[path.Clean(l)]
		if !ok {
			t.Fatalf("layer %s missing from the archive", l)
		}
		var r io.Reader = bytes.NewReader(layer)
		if len(layer) > 2 && layer[0] == 0x1f && layer[1] == 0x8b {
			if r, err = gzip.NewReader(r); err != nil {
				t.Fatal(err)
			}
		}
		lr := tar.NewReader(bufio.NewReader(r))
		for {
			h, err := lr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("layer %s: %v", l, err)
			}
			name := path.Clean(strings.TrimPrefix(h.Name, "/"))
			if name == "." || strings.HasPrefix(name, "../") {
				continue
			}
			target := filepath.Join(dir, filepath.FromSlash(name))
			switch h.Typeflag {
			case tar.TypeDir:
				if err := os.MkdirAll(target, 0o755); err != nil {
					t.Fatal(err)
				}
			case tar.TypeReg:
				if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(lr)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(target, b, 0o755); err != nil {
					t.Fatal(err)
				}
				files[name] = true
			default:
				// A symlink or device would be a surprise in a FROM-scratch
				// image of two files.
				files[name+" ("+string(h.Typeflag)+")"] = true
			}
		}
	}
	return files
}
