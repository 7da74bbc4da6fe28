// Package config reads qci-appci's configuration from the environment
// (prefix QCI_, plus PORT), validates all of it at once and keeps secrets out
// of anything that prints.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/qci-appci/qci-appci/function/clusterconfig"
	"github.com/qci-appci/qci-appci/function/loginlimit"
	"github.com/qci-appci/qci-appci/function/metrics"
	"github.com/qci-appci/qci-appci/function/policy"
	"github.com/qci-appci/qci-appci/function/publicurl"
	"github.com/qci-appci/qci-appci/function/registry"
)

// Defaults returns the configuration with every default of the table in
// DESIGN.md and no secrets (so it does not validate until they are set).
func Defaults() Config {
	return Config{
		Port:                 8080,
		UpstreamURL:          "https://quay.io",
		UpstreamRepository:   "openshift/ci",
		TokenTTL:             NewDuration(time.Hour),
		RefreshTTL:           NewDuration(24 * time.Hour),
		AuthzNamespace:       "ocp",
		ReviewCacheTTL:       NewDuration(5 * time.Minute),
		ManifestCacheBytes:   ByteSize{N: 8 << 20, raw: "8MiB"},
		MetricsPort:          9090,
		SecretReloadInterval: NewDuration(time.Minute),
		FlatRepository:       true,
		LoginRate:            loginlimit.DefaultRate, // reasoned in function/loginlimit
		LoginBurst:           loginlimit.DefaultBurst,
	}
}

// NewDuration wraps d for a Config built by hand.
func NewDuration(d time.Duration) Duration { return Duration{Duration: d, raw: d.String()} }

// Prefix is the environment prefix of every variable but PORT.
const Prefix = "QCI"

// Config is the whole configuration of one instance. Its zero value is not
// usable: build it with Load, or fill it and call Validate (or Parse, which
// also returns what the function is built from).
//
// Every field but those tagged ignored:"true" carries an envconfig tag and
// is read from QCI_<tag> only (or <tag>, with noprefix:"true"); a field
// tagged secret:"true" also from QCI_<tag>_FILE. Load derives the names it
// reads and knows from these tags, so a field added here needs nothing
// more.
type Config struct {
	// Port is the listen port, read from PORT (no prefix: Knative and Cloud
	// Run set it). QCI_PORT is not read; set, it is reported as unknown.
	Port Port `envconfig:"PORT" noprefix:"true" default:"8080"`
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
	// ClustersFile names a YAML file listing the clusters whose tokens log
	// in (see package clusterconfig); it replaces Kubeconfig,
	// AuthzNamespace and TokenAudiences, which are then not to be set.
	ClustersFile string `envconfig:"CLUSTERS_FILE"`
	// UpstreamTokenHosts are token endpoints, "host" or "host:port", that
	// may receive the robot credentials (over https) besides the upstream's
	// own trust domain (its host, or its registrable domain).
	UpstreamTokenHosts []string `envconfig:"UPSTREAM_TOKEN_HOSTS"`
	// ManifestCacheBytes bounds the in-memory cache of manifests by digest
	// (keys plus values); 0 turns it off.
	ManifestCacheBytes ByteSize `envconfig:"MANIFEST_CACHE_BYTES" default:"8MiB"`
	// OpenImages are namespaces ("ci") and image streams ("ci/ci-operator")
	// that every authenticated cluster user may pull without a review.
	OpenImages []string `envconfig:"OPEN_IMAGES"`
	// FlatRepository grants the upstream repository itself to cluster users
	// whom the namespace-wide review in AuthzNamespace allows; false: only
	// image-stream repositories are granted to them.
	FlatRepository bool `envconfig:"FLAT_REPOSITORY" default:"true"`
	// MetricsPort is the port of the Prometheus metrics (/metrics), apart
	// from the served port; 0 turns metrics off.
	MetricsPort Port `envconfig:"METRICS_PORT" default:"9090"`
	// SecretReloadInterval is how often, at most, secrets given as
	// <NAME>_FILE are re-read to notice a rotation; 0: read once at start.
	SecretReloadInterval Duration `envconfig:"SECRET_RELOAD_INTERVAL" default:"1m"`
	// LoginRate is how many failed logins a second each client address and
	// each username get back.
	LoginRate Float `envconfig:"LOGIN_RATE" default:"10"`
	// LoginBurst is how many failed logins in a row a client address or a
	// username may have before logins that need a review answer 429.
	LoginBurst Count `envconfig:"LOGIN_BURST" default:"600"`
	// ClientIPHeader names the header the platform sets or appends the
	// client's address to (X-Forwarded-For); its rightmost public entry is
	// taken (see loginlimit.ClientAddress). Empty: the peer's address. Set
	// it only where the platform's proxies write that header, or clients
	// choose their own address.
	ClientIPHeader string `envconfig:"CLIENT_IP_HEADER"`

	// Logger receives the instance's logs; nil means slog.Default().
	Logger *slog.Logger `ignored:"true"`
	// Metrics receive what the handlers observe; nil: none are kept.
	Metrics *metrics.Metrics `ignored:"true"`
	// SecretFiles are the files of the secrets given as <NAME>_FILE, by
	// variable name (QCI_ROBOT_PASSWORD); Load fills it. The function
	// re-reads them when they change (see function/secretfile).
	SecretFiles map[string]string `ignored:"true"`

	// clusters is the clusters file as Load or Parse read it; a later
	// Parse of the same ClustersFile uses it instead of reading again.
	clusters *clustersRead
}

// clustersRead is the clusters file at path, read and validated.
type clustersRead struct {
	path string
	file *clusterconfig.File
}

// Parsed are the values Parse made of the settings that are more than a
// string or a number: what the function is built from, so that no setting
// is parsed a second time and nothing that validated can fail to build.
type Parsed struct {
	// UpstreamURL is QCI_UPSTREAM_URL, without a trailing "/".
	UpstreamURL *url.URL
	// Public resolves the public URL: QCI_EXPOSED_URL, or when unset each
	// request's host.
	Public publicurl.Resolver
	// OpenImages are QCI_OPEN_IMAGES.
	OpenImages policy.Open
	// Clusters is QCI_CLUSTERS_FILE as read once (see Parse); nil when
	// unset.
	Clusters *clusterconfig.File
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

// Float is a number; a value that is not one decodes to NaN, so that
// Validate reports it with every other problem.
type Float float64

// Decode implements envconfig.Decoder.
func (f *Float) Decode(value string) error {
	n, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
	if err != nil {
		n = math.NaN()
	}
	*f = Float(n)
	return nil
}

// Count is a whole number; a value that is not one decodes to -1, so that
// Validate reports it with every other problem.
type Count int

// Decode implements envconfig.Decoder.
func (c *Count) Decode(value string) error {
	n, err := strconv.Atoi(strings.TrimSpace(value))
	if err != nil {
		n = -1
	}
	*c = Count(n)
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
// <NAME>_FILE variants of secrets, and validates it. Only the names of
// envFields are read: envconfig's fallback to a field's unprefixed name
// (KUBECONFIG, ROBOT_PASSWORD...) never happens. A QCI_ variable that is
// none of them (a typo) is a problem too. The error lists every missing,
// bad or unknown value.
func Load() (Config, error) {
	var c Config
	fields := envFields()
	problems := readEnv(&c, fields)
	problems = append(problems, unknownEnv(fields)...)
	for _, s := range c.secrets() {
		if p := readSecretFile(s.env, s.value); p != "" {
			problems = append(problems, p)
		}
	}
	if _, err := c.validate(problems); err != nil {
		return c, err
	}
	c.SecretFiles = secretFiles()
	return c, nil
}

// envField is a field of Config read from the environment.
type envField struct {
	index  int    // of the field in Config
	name   string // the one variable it is read from
	secret bool   // also read from name+"_FILE"
	field  reflect.StructField
}

// envFields walks Config's struct tags: every field that envconfig would
// read (not ignored:"true") is read from Prefix_<envconfig tag>, or from the
// bare tag when noprefix:"true". Fields added to Config are thereby read
// and known (not reported as unknown) without being listed anywhere else.
func envFields() []envField {
	t := reflect.TypeFor[Config]()
	var fields []envField
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() || f.Tag.Get("ignored") == "true" {
			continue
		}
		name := strings.ToUpper(f.Tag.Get("envconfig"))
		if name == "" {
			name = strings.ToUpper(f.Name)
		}
		if f.Tag.Get("noprefix") != "true" {
			name = Prefix + "_" + name
		}
		fields = append(fields, envField{index: i, name: name, secret: f.Tag.Get("secret") == "true", field: f})
	}
	return fields
}

// readEnv decodes each field from its variable with envconfig, one field at
// a time through a one-field struct whose tag names the full variable, so
// that envconfig has no other name to fall back to and every bad value is
// reported, not only the first. Slice entries are trimmed of spaces
// ("a, b" is "a" and "b").
func readEnv(c *Config, fields []envField) []string {
	var problems []string
	cv := reflect.ValueOf(c).Elem()
	for _, f := range fields {
		tag := fmt.Sprintf("envconfig:%q", f.name)
		if def, ok := f.field.Tag.Lookup("default"); ok {
			tag += fmt.Sprintf(" default:%q", def)
		}
		one := reflect.New(reflect.StructOf([]reflect.StructField{{Name: "V", Type: f.field.Type, Tag: reflect.StructTag(tag)}}))
		if err := envconfig.Process("", one.Interface()); err != nil {
			var pe *envconfig.ParseError
			switch {
			case f.secret:
				problems = append(problems, fmt.Sprintf("%s is not valid", f.name))
			case errors.As(err, &pe):
				problems = append(problems, fmt.Sprintf("%s %q is not a valid %s: %v", f.name, pe.Value, pe.TypeName, pe.Err))
			default:
				problems = append(problems, fmt.Sprintf("%s: %v", f.name, err))
			}
			continue
		}
		v := one.Elem().Field(0)
		if ss, ok := v.Interface().([]string); ok {
			for i := range ss {
				ss[i] = strings.TrimSpace(ss[i])
			}
		}
		cv.Field(f.index).Set(v)
	}
	return problems
}

// notConfig are QCI_ variables of qci-appci's own build and test tools
// (test/kubeapiserver/build.sh, test/kubecluster, test/deploy), which may be
// in the environment of a function those tools start.
var notConfig = map[string]bool{
	"QCI_CACHE_DIR":           true,
	"QCI_KUBE_APISERVER":      true,
	"QCI_TEST_SERVE_FUNCTION": true,
}

// unknownEnv reports every QCI_ variable in the environment that is not
// read: a typo such as QCI_UPSTREAM_REPO must not be silently ignored.
func unknownEnv(fields []envField) []string {
	known := map[string]bool{}
	for _, f := range fields {
		known[f.name] = true
		if f.secret {
			known[f.name+"_FILE"] = true
		}
	}
	var problems []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, Prefix+"_") || known[name] || notConfig[name] {
			continue
		}
		if name == Prefix+"_PORT" {
			problems = append(problems, name+" is not read: the listen port is PORT, without a prefix")
			continue
		}
		problems = append(problems, name+" is not a variable qci-appci knows (a typo?)")
	}
	sort.Strings(problems)
	return problems
}

type secretField struct {
	env   string
	value *Secret
}

// secrets are the fields tagged secret:"true", by their variable names.
func (c *Config) secrets() []secretField {
	cv := reflect.ValueOf(c).Elem()
	var secrets []secretField
	for _, f := range envFields() {
		if f.secret {
			secrets = append(secrets, secretField{f.name, cv.Field(f.index).Addr().Interface().(*Secret)})
		}
	}
	return secrets
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

// Validate checks a configuration built by hand, as Load checks what it
// reads: Parse without its result.
func (c *Config) Validate() error {
	_, err := c.Parse()
	return err
}

// Parse checks c and returns what it parsed, or an *Error listing every
// problem. The clusters file is read once: Load, or the first Parse, keeps
// what it read and validated in c (and so in its copies), and a Parse of
// the same ClustersFile later uses that, so that function.New builds the
// clusters that start-up validated even if the file has changed or gone
// since.
func (c *Config) Parse() (Parsed, error) { return c.validate(nil) }

func (c *Config) validate(problems []string) (Parsed, error) {
	var p Parsed
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if c.Port <= 0 || c.Port > 65535 {
		bad("PORT must be a number from 1 to 65535")
	}
	if c.MetricsPort < 0 || c.MetricsPort > 65535 {
		bad("%s_METRICS_PORT must be a number from 0 (metrics off) to 65535", Prefix)
	}
	if c.ExposedURL != "" {
		if u, err := checkBaseURL(c.ExposedURL); err != nil {
			bad("%s_EXPOSED_URL: %v", Prefix, err)
		} else {
			p.Public = publicurl.FromURL(u)
		}
	}
	if u, err := checkBaseURL(c.UpstreamURL); err != nil {
		bad("%s_UPSTREAM_URL: %v", Prefix, err)
	} else {
		u.Path, u.RawPath = "", "" // "/" at most
		p.UpstreamURL = u
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
	checkDuration("SECRET_RELOAD_INTERVAL", c.SecretReloadInterval, 0)
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
	if c.ClustersFile != "" {
		var fileProblems []string
		p.Clusters, fileProblems = c.clustersFile()
		problems = append(problems, fileProblems...)
	}
	if c.ManifestCacheBytes.err != nil {
		bad("%s_MANIFEST_CACHE_BYTES %q is not a size in bytes (e.g. 8MiB, 0 for off)", Prefix, c.ManifestCacheBytes.raw)
	}
	for _, h := range c.UpstreamTokenHosts {
		if err := checkHost(strings.TrimSpace(h)); err != nil {
			bad("%s_UPSTREAM_TOKEN_HOSTS: %v", Prefix, err)
		}
	}
	open, err := policy.ParseOpen(c.OpenImages)
	var oe *policy.OpenError
	switch {
	case errors.As(err, &oe):
		for _, o := range oe.Problems {
			bad("%s_OPEN_IMAGES: %s", Prefix, o)
		}
	case err != nil:
		bad("%s_OPEN_IMAGES: %v", Prefix, err)
	default:
		p.OpenImages = open
	}
	if r := float64(c.LoginRate); !(r > 0) || math.IsInf(r, 0) {
		bad("%s_LOGIN_RATE must be a positive number of failed logins a second", Prefix)
	}
	if c.LoginBurst < 1 {
		bad("%s_LOGIN_BURST must be a whole number of at least 1", Prefix)
	}
	if c.ClientIPHeader != "" && !validHeaderName(c.ClientIPHeader) {
		bad("%s_CLIENT_IP_HEADER %q is not a header name", Prefix, c.ClientIPHeader)
	}
	if len(problems) > 0 {
		return Parsed{}, &Error{Problems: problems}
	}
	return p, nil
}

// clustersFile checks QCI_CLUSTERS_FILE: not together with the
// single-cluster variables, and a file that loads and validates, read
// unless c holds it already (see Parse).
func (c *Config) clustersFile() (*clusterconfig.File, []string) {
	var problems []string
	var single []string
	if c.Kubeconfig != "" {
		single = append(single, Prefix+"_KUBECONFIG")
	}
	if c.AuthzNamespace != Defaults().AuthzNamespace {
		single = append(single, Prefix+"_AUTHZ_NAMESPACE")
	}
	if len(c.TokenAudiences) > 0 {
		single = append(single, Prefix+"_TOKEN_AUDIENCES")
	}
	if len(single) > 0 {
		problems = append(problems, fmt.Sprintf("%s_CLUSTERS_FILE and %s are both set: the clusters file names each cluster's kubeconfig, namespace and audiences; set one",
			Prefix, strings.Join(single, ", ")))
	}
	if c.clusters != nil && c.clusters.path == c.ClustersFile {
		return c.clusters.file, problems
	}
	f, err := clusterconfig.Load(c.ClustersFile)
	if err != nil {
		var ce *clusterconfig.Error
		if !errors.As(err, &ce) {
			return nil, append(problems, fmt.Sprintf("%s_CLUSTERS_FILE %s: %v", Prefix, c.ClustersFile, err))
		}
		for _, p := range ce.Problems {
			problems = append(problems, fmt.Sprintf("%s_CLUSTERS_FILE %s: %s", Prefix, c.ClustersFile, p))
		}
		return nil, problems
	}
	c.clusters = &clustersRead{path: c.ClustersFile, file: f}
	return f, problems
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

// validHeaderName reports whether s is an HTTP header field name (an RFC
// 9110 token).
func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return s != ""
}

// checkBaseURL parses raw, which must be scheme://host[:port] with an
// http or https scheme and at most "/" for a path.
func checkBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q must start with http:// or https://", raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%q has no host", raw)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q must be scheme://host[:port] only", raw)
	}
	return u, nil
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
		slog.String("clusters_file", c.ClustersFile),
		slog.Any("upstream_token_hosts", c.UpstreamTokenHosts),
		slog.Int64("manifest_cache_bytes", c.ManifestCacheBytes.N),
		slog.Int("metrics_port", int(c.MetricsPort)),
		slog.String("secret_reload_interval", c.SecretReloadInterval.String()),
		slog.Float64("login_rate", float64(c.LoginRate)),
		slog.Int("login_burst", int(c.LoginBurst)),
		slog.String("client_ip_header", c.ClientIPHeader),
	)
}

// String describes the configuration, secrets redacted.
func (c Config) String() string { return c.LogValue().String() }
