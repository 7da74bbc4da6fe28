// Package config reads qci-appci's configuration from the environment
// (prefix QCI_, plus PORT), validates all of it at once and keeps secrets out
// of anything that prints.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/qci-appci/qci-appci/function/registry"
)

// Defaults returns the configuration with every default of the table in
// DESIGN.md and no secrets (so it does not validate until they are set).
func Defaults() Config {
	return Config{
		Port:               8080,
		UpstreamURL:        "https://quay.io",
		UpstreamRepository: "openshift/ci",
		TokenTTL:           NewDuration(time.Hour),
		RefreshTTL:         NewDuration(24 * time.Hour),
		AuthzNamespace:     "ocp",
		ReviewCacheTTL:     NewDuration(5 * time.Minute),
		ManifestCacheBytes: ByteSize{N: 8 << 20, raw: "8MiB"},
	}
}

// NewDuration wraps d for a Config built by hand.
func NewDuration(d time.Duration) Duration { return Duration{Duration: d, raw: d.String()} }

// Prefix is the environment prefix of every variable but PORT.
const Prefix = "QCI"

// Config is the whole configuration of one instance. Its zero value is not
// usable: build it with Load, or fill it and call Validate.
type Config struct {
	// Port is the listen port. envconfig reads QCI_PORT, then PORT, which is
	// what Knative and Cloud Run set.
	Port Port `envconfig:"PORT" default:"8080"`
	// ExposedURL is the public URL; its host is the token service, issuer and
	// audience. Empty: taken from each request's Host and X-Forwarded-Proto.
	ExposedURL string `envconfig:"EXPOSED_URL"`
	// UpstreamURL is the upstream registry.
	UpstreamURL string `envconfig:"UPSTREAM_URL" default:"https://quay.io"`
	// UpstreamRepository is the one repository served.
	UpstreamRepository string `envconfig:"UPSTREAM_REPOSITORY" default:"openshift/ci"`
	// RobotUsername and RobotPassword are the upstream robot, also a login here.
	RobotUsername Secret `envconfig:"ROBOT_USERNAME" secret:"true"`
	RobotPassword Secret `envconfig:"ROBOT_PASSWORD" secret:"true"`
	// SigningKey holds the JWT keys, one per line: the first signs, all verify.
	SigningKey Secret `envconfig:"SIGNING_KEY" secret:"true"`
	// TokenTTL is the lifetime of issued access tokens.
	TokenTTL Duration `envconfig:"TOKEN_TTL" default:"1h"`
	// RefreshTTL is the lifetime of refresh tokens.
	RefreshTTL Duration `envconfig:"REFRESH_TTL" default:"24h"`
	// Kubeconfig is the cluster that validates tokens; empty: in-cluster
	// config when running in a pod, else cluster login is off.
	Kubeconfig string `envconfig:"KUBECONFIG"`
	// AuthzNamespace is the namespace of the SubjectAccessReview.
	AuthzNamespace string `envconfig:"AUTHZ_NAMESPACE" default:"ocp"`
	// TokenAudiences are the TokenReview spec.audiences (empty: the API
	// server's default audience).
	TokenAudiences []string `envconfig:"TOKEN_AUDIENCES"`
	// ReviewCacheTTL is the longest an allowed cluster review is reused.
	ReviewCacheTTL Duration `envconfig:"REVIEW_CACHE_TTL" default:"5m"`
	// UpstreamTokenHosts are token endpoints, "host" or "host:port", that
	// may receive the robot credentials (over https) besides the upstream's
	// own trust domain (its host, or its registrable domain).
	UpstreamTokenHosts []string `envconfig:"UPSTREAM_TOKEN_HOSTS"`
	// ManifestCacheBytes bounds the in-memory cache of manifests by digest
	// (keys plus values); 0 turns it off.
	ManifestCacheBytes ByteSize `envconfig:"MANIFEST_CACHE_BYTES" default:"8MiB"`

	// Logger receives the instance's logs; nil means slog.Default().
	Logger *slog.Logger `ignored:"true"`
}

// Port is a TCP port number; a value that is not a number decodes to -1, so
// that Validate reports it with every other problem.
type Port int

// Decode implements envconfig.Decoder.
func (p *Port) Decode(value string) error {
	n, err := strconv.Atoi(strings.TrimSpace(value))
	if err != nil {
		n = -1
	}
	*p = Port(n)
	return nil
}

// Secret is a string that never prints.
type Secret string

// String redacts the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// LogValue redacts the secret in structured logs.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// GoString redacts the secret in %#v.
func (s Secret) GoString() string { return s.String() }

// Format redacts the secret in every fmt verb.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// Duration is a time.Duration that records a parse error instead of
// returning it, so that Validate can list every bad variable at once.
type Duration struct {
	time.Duration
	raw string
	err error
}

// Decode implements envconfig.Decoder.
func (d *Duration) Decode(value string) error {
	d.raw = value
	d.Duration, d.err = time.ParseDuration(strings.TrimSpace(value))
	return nil
}

// ByteSize is a count of bytes: a number, optionally with a KiB, MiB or GiB
// suffix. Like Duration, it records a parse error for Validate.
type ByteSize struct {
	N   int64
	raw string
	err error
}

// NewByteSize wraps n for a Config built by hand.
func NewByteSize(n int64) ByteSize { return ByteSize{N: n, raw: strconv.FormatInt(n, 10)} }

// Decode implements envconfig.Decoder.
func (b *ByteSize) Decode(value string) error {
	b.raw = value
	v := strings.TrimSpace(value)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	switch {
	case err != nil:
		b.err = err
	case n < 0 || n > (1<<62)/mult:
		b.err = errors.New("out of range")
	default:
		b.N, b.err = n*mult, nil
	}
	return nil
}

// String is the value as given.
func (b ByteSize) String() string { return b.raw }

// Signing keys must be at least this long (HS256 key strength).
const minKeyLen = 32

// MinTokenTTL is the shortest access token lifetime: expires_in is at least 60.
const MinTokenTTL = 60 * time.Second

// Load reads the configuration from the environment, including the
// <NAME>_FILE variants of secrets, and validates it. The error lists every
// missing or bad value.
func Load() (Config, error) {
	var c Config
	if err := envconfig.Process(Prefix, &c); err != nil {
		return c, fmt.Errorf("invalid configuration: %w", err)
	}
	var problems []string
	for _, s := range c.secrets() {
		if p := readSecretFile(s.env, s.value); p != "" {
			problems = append(problems, p)
		}
	}
	if err := c.validate(problems); err != nil {
		return c, err
	}
	return c, nil
}

type secretField struct {
	env   string
	value *Secret
}

func (c *Config) secrets() []secretField {
	return []secretField{
		{Prefix + "_ROBOT_USERNAME", &c.RobotUsername},
		{Prefix + "_ROBOT_PASSWORD", &c.RobotPassword},
		{Prefix + "_SIGNING_KEY", &c.SigningKey},
	}
}

// SecretEnvNames lists the variables that hold secrets; each also has a
// <NAME>_FILE form.
func SecretEnvNames() []string {
	var c Config
	var names []string
	for _, s := range c.secrets() {
		names = append(names, s.env)
	}
	return names
}

// readSecretFile fills *value from the file named by env+"_FILE", if set.
// It returns a problem description, or "".
func readSecretFile(env string, value *Secret) string {
	path, ok := os.LookupEnv(env + "_FILE")
	if !ok || path == "" {
		return ""
	}
	if *value != "" {
		return fmt.Sprintf("%s and %s_FILE are both set; set one", env, env)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("%s_FILE: %v", env, err)
	}
	*value = Secret(strings.TrimRight(string(b), "\r\n"))
	return ""
}

// Validate checks a configuration built by hand; Load calls it.
func (c *Config) Validate() error { return c.validate(nil) }

func (c *Config) validate(problems []string) error {
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if c.Port <= 0 || c.Port > 65535 {
		bad("PORT must be a number from 1 to 65535")
	}
	if c.ExposedURL != "" {
		if err := checkBaseURL(c.ExposedURL); err != nil {
			bad("%s_EXPOSED_URL: %v", Prefix, err)
		}
	}
	if err := checkBaseURL(c.UpstreamURL); err != nil {
		bad("%s_UPSTREAM_URL: %v", Prefix, err)
	}
	if !registry.ValidRepository(c.UpstreamRepository) {
		bad("%s_UPSTREAM_REPOSITORY %q is not a repository name", Prefix, c.UpstreamRepository)
	}
	if c.RobotUsername == "" {
		bad("%s_ROBOT_USERNAME (or %s_ROBOT_USERNAME_FILE) is required", Prefix, Prefix)
	}
	if c.RobotPassword == "" {
		bad("%s_ROBOT_PASSWORD (or %s_ROBOT_PASSWORD_FILE) is required", Prefix, Prefix)
	}
	if keys := c.SigningKeys(); len(keys) == 0 {
		bad("%s_SIGNING_KEY (or %s_SIGNING_KEY_FILE) is required: at least one key of %d bytes or more", Prefix, Prefix, minKeyLen)
	} else {
		for i, k := range keys {
			if len(k) < minKeyLen {
				bad("%s_SIGNING_KEY: key %d is %d bytes; each key must be at least %d", Prefix, i+1, len(k), minKeyLen)
			}
		}
	}
	checkDuration := func(name string, d Duration, minimum time.Duration) {
		switch {
		case d.err != nil:
			bad("%s_%s %q is not a duration (e.g. 1h, 90m)", Prefix, name, d.raw)
		case d.Duration < minimum:
			bad("%s_%s %v is shorter than %v", Prefix, name, d.Duration, minimum)
		}
	}
	checkDuration("TOKEN_TTL", c.TokenTTL, MinTokenTTL)
	checkDuration("REFRESH_TTL", c.RefreshTTL, MinTokenTTL)
	checkDuration("REVIEW_CACHE_TTL", c.ReviewCacheTTL, 0)
	if c.Kubeconfig != "" {
		if _, err := os.Stat(c.Kubeconfig); err != nil {
			bad("%s_KUBECONFIG: %v", Prefix, err)
		}
	}
	if c.AuthzNamespace == "" {
		bad("%s_AUTHZ_NAMESPACE must not be empty", Prefix)
	}
	for _, a := range c.TokenAudiences {
		if strings.TrimSpace(a) == "" {
			bad("%s_TOKEN_AUDIENCES holds an empty audience", Prefix)
		}
	}
	if c.ManifestCacheBytes.err != nil {
		bad("%s_MANIFEST_CACHE_BYTES %q is not a size in bytes (e.g. 8MiB, 0 for off)", Prefix, c.ManifestCacheBytes.raw)
	}
	for _, h := range c.UpstreamTokenHosts {
		if err := checkHost(strings.TrimSpace(h)); err != nil {
			bad("%s_UPSTREAM_TOKEN_HOSTS: %v", Prefix, err)
		}
	}
	if len(problems) > 0 {
		return &Error{Problems: problems}
	}
	return nil
}

// Error lists every problem found in a configuration.
type Error struct{ Problems []string }

// Error lists the problems in one message.
func (e *Error) Error() string {
	return "invalid configuration: " + strings.Join(e.Problems, "; ")
}

// ErrInvalid matches every *Error with errors.Is.
var ErrInvalid = errors.New("invalid configuration")

// Is makes errors.Is(err, ErrInvalid) true.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

func checkBaseURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q must start with http:// or https://", raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%q has no host", raw)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q must be scheme://host[:port] only", raw)
	}
	return nil
}

// checkHost accepts "host" or "host:port" and nothing more.
func checkHost(h string) error {
	if h == "" {
		return errors.New("empty host (entries are comma-separated host or host:port)")
	}
	u, err := url.Parse("https://" + h)
	if err != nil || u.Host != h || u.Hostname() == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q is not a host or host:port", h)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q has a bad port", h)
		}
	}
	return nil
}

// SigningKeys returns the signing keys, one a non-empty line; the first signs.
func (c *Config) SigningKeys() [][]byte {
	var keys [][]byte
	for _, line := range strings.Split(string(c.SigningKey), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		keys = append(keys, []byte(line))
	}
	return keys
}

// LogValue describes the configuration for logs, secrets redacted.
func (c Config) LogValue() slog.Value {
	set := func(s Secret) string {
		if s == "" {
			return "unset"
		}
		return "set"
	}
	return slog.GroupValue(
		slog.Int("port", int(c.Port)),
		slog.String("exposed_url", c.ExposedURL),
		slog.String("upstream_url", c.UpstreamURL),
		slog.String("upstream_repository", c.UpstreamRepository),
		slog.String("robot_username", set(c.RobotUsername)),
		slog.String("robot_password", set(c.RobotPassword)),
		slog.Int("signing_keys", len(c.SigningKeys())),
		slog.String("token_ttl", c.TokenTTL.String()),
		slog.String("refresh_ttl", c.RefreshTTL.String()),
		slog.String("kubeconfig", c.Kubeconfig),
		slog.String("authz_namespace", c.AuthzNamespace),
		slog.Any("token_audiences", c.TokenAudiences),
		slog.String("review_cache_ttl", c.ReviewCacheTTL.String()),
		slog.Any("upstream_token_hosts", c.UpstreamTokenHosts),
		slog.Int64("manifest_cache_bytes", c.ManifestCacheBytes.N),
	)
}

// String describes the configuration, secrets redacted.
func (c Config) String() string { return c.LogValue().String() }
