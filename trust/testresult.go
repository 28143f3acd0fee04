package trust

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	testresult "github.com/in-toto/attestation/go/predicates/test_result/v0"
	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestResultType is the in-toto test-result predicate
// (https://github.com/in-toto/attestation/blob/main/spec/predicates/test-result.md).
const TestResultType = "https://in-toto.io/attestation/test-result/v0.1"

// The digests of a test result's subjects besides TreeDigest.
const (
	// DerivationDigest is a derivation's hash (docs/derivation.md) in hex:
	// what identifies a tested path that is not built.
	DerivationDigest = "hephcDerivation"
)

// The results of a test.
const (
	TestPassed = "PASSED"
	TestFailed = "FAILED"
)

// TestSubject is one store path a test result is about: the test's own
// output, or a path it tests.
type TestSubject struct {
	Path string
	// ContentHash is blake3:<hex> when the path is built, else "".
	ContentHash string
	// Derivation is the hex of its derivation's hash.
	Derivation string
}

// TestRun is what one run of a test says: its result and checks, about
// which paths, the test derivation (configuration), when, and by whom.
type TestRun struct {
	// Test is the test's output path; Tested the paths it tests.
	Test   TestSubject
	Tested []TestSubject
	// Derivation is the test derivation's hash (52 characters).
	Derivation string
	Result     string // TestPassed or TestFailed
	Passed     []string
	Warned     []string
	Failed     []string
	// Runner identifies who ran it (free text, as a build's builder).
	Runner string
	Time   time.Time
}

func (s TestSubject) descriptor() (*intoto.ResourceDescriptor, error) {
	d := &intoto.ResourceDescriptor{Name: s.Path, Digest: map[string]string{}}
	if s.ContentHash != "" {
		h, ok := hexDigest(s.ContentHash, "blake3:")
		if !ok {
			return nil, fmt.Errorf("test subject %s: content hash %q is not blake3:<64 hex digits>", s.Path, s.ContentHash)
		}
		d.Digest[TreeDigest] = h
	}
	if s.Derivation != "" {
		d.Digest[DerivationDigest] = s.Derivation
	}
	if len(d.Digest) == 0 {
		return nil, fmt.Errorf("test subject %s: no digest", s.Path)
	}
	return d, nil
}

// MarshalTestStatement returns the in-toto statement of r with the
// test-result predicate: subjects the test's output then the tested paths
// (sorted), configuration the test derivation, the checks sorted.
func MarshalTestStatement(r *TestRun) ([]byte, error) {
	if r.Result != TestPassed && r.Result != TestFailed {
		return nil, fmt.Errorf("test result %q: want %s or %s", r.Result, TestPassed, TestFailed)
	}
	if r.Runner == "" {
		return nil, fmt.Errorf("test result of %s: no runner", r.Test.Path)
	}
	st := &intoto.Statement{Type: StatementType, PredicateType: TestResultType}
	tested := slices.Clone(r.Tested)
	slices.SortFunc(tested, func(a, b TestSubject) int { return strings.Compare(a.Path, b.Path) })
	for _, s := range append([]TestSubject{r.Test}, tested...) {
		d, err := s.descriptor()
		if err != nil {
			return nil, err
		}
		st.Subject = append(st.Subject, d)
	}
	pred := &testresult.TestResult{
		Result: r.Result,
		Configuration: []*intoto.ResourceDescriptor{{
			Name:   "derivation",
			Digest: map[string]string{DerivationDigest: r.Derivation},
			Annotations: mustStruct(map[string]any{
				"hephc.dev/runner":   r.Runner,
				"hephc.dev/finished": r.Time.UTC().Format(time.RFC3339),
			}),
		}},
		PassedTests: sortedCopy(r.Passed),
		WarnedTests: sortedCopy(r.Warned),
		FailedTests: sortedCopy(r.Failed),
	}
	pb, err := protojson.Marshal(pred)
	if err != nil {
		return nil, err
	}
	var ps map[string]any
	if err := json.Unmarshal(pb, &ps); err != nil {
		return nil, err
	}
	st.Predicate = mustStruct(ps)
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("test result of %s: %w", r.Test.Path, err)
	}
	b, err := protojson.Marshal(st)
	if err != nil {
		return nil, err
	}
	// protojson's output is deliberately unstable in whitespace: one
	// canonical form, so equal runs give equal bytes.
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// ParseTestStatement reads a statement as MarshalTestStatement writes it,
// validated by the in-toto reference implementation.
func ParseTestStatement(b []byte) (*TestRun, error) {
	var st intoto.Statement
	if err := protojson.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("not an in-toto statement: %w", err)
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("not a valid in-toto statement: %w", err)
	}
	if st.PredicateType != TestResultType {
		return nil, fmt.Errorf("predicate type %q, want %s", st.PredicateType, TestResultType)
	}
	pj, err := protojson.Marshal(st.Predicate)
	if err != nil {
		return nil, err
	}
	var pred testresult.TestResult
	if err := protojson.Unmarshal(pj, &pred); err != nil {
		return nil, fmt.Errorf("not an in-toto test result: %w", err)
	}
	if len(st.Subject) == 0 || len(pred.Configuration) != 1 {
		return nil, fmt.Errorf("test result: want subjects and one configuration (the test derivation)")
	}
	r := &TestRun{Result: pred.Result, Passed: pred.PassedTests, Warned: pred.WarnedTests, Failed: pred.FailedTests}
	if r.Result != TestPassed && r.Result != TestFailed {
		return nil, fmt.Errorf("test result %q: want %s or %s", r.Result, TestPassed, TestFailed)
	}
	cfg := pred.Configuration[0]
	r.Derivation = cfg.Digest[DerivationDigest]
	ann := cfg.GetAnnotations().AsMap()
	r.Runner, _ = ann["hephc.dev/runner"].(string)
	when, _ := ann["hephc.dev/finished"].(string)
	if r.Time, err = time.Parse(time.RFC3339, when); err != nil {
		return nil, fmt.Errorf("test result: time %q: %w", when, err)
	}
	for i, d := range st.Subject {
		s := TestSubject{Path: d.Name, Derivation: d.Digest[DerivationDigest]}
		if h := d.Digest[TreeDigest]; h != "" {
			s.ContentHash = "blake3:" + h
		}
		if i == 0 {
			r.Test = s
		} else {
			r.Tested = append(r.Tested, s)
		}
	}
	return r, nil
}

// SignTestResult returns the DSSE envelope of r's statement, signed by k;
// with no key, an envelope with no signature (the result is recorded,
// vouched for by nobody).
func SignTestResult(r *TestRun, k *SecretKey) ([]byte, error) {
	payload, err := MarshalTestStatement(r)
	if err != nil {
		return nil, err
	}
	if k == nil {
		return json.Marshal(&dsse.Envelope{PayloadType: PayloadType, Payload: base64.StdEncoding.EncodeToString(payload), Signatures: []dsse.Signature{}})
	}
	return signStatement(payload, k)
}

// ReadTestResult returns what envelope b says of a test without checking
// any signature, and the key ids it names: for listing. Verify with
// VerifyTestResult.
func ReadTestResult(b []byte) (*TestRun, []KeyID, error) {
	var env dsse.Envelope
	if err := strictUnmarshal(b, &env); err != nil {
		return nil, nil, fmt.Errorf("reading envelope: %w", err)
	}
	if env.PayloadType != PayloadType {
		return nil, nil, fmt.Errorf("envelope payload type %q, want %s", env.PayloadType, PayloadType)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, nil, fmt.Errorf("envelope payload: not standard base64: %w", err)
	}
	r, err := ParseTestStatement(payload)
	if err != nil {
		return nil, nil, err
	}
	var ids []KeyID
	for _, s := range env.Signatures {
		ids = append(ids, KeyID(s.KeyID))
	}
	return r, ids, nil
}

// VerifyTestResult returns the keys of keys whose signatures of envelope
// b are valid.
func VerifyTestResult(b []byte, keys KeyRing) ([]KeyID, error) {
	_, valid, _, err := openEnvelope(b, PayloadType, keys)
	return valid, err
}

// IsTestResult says whether envelope b holds a test-result statement.
func IsTestResult(b []byte) bool {
	var env dsse.Envelope
	if json.Unmarshal(b, &env) != nil {
		return false
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return false
	}
	var st struct {
		PredicateType string `json:"predicateType"`
	}
	return json.Unmarshal(payload, &st) == nil && st.PredicateType == TestResultType
}

func sortedCopy(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return out
}

// mustStruct makes m a protobuf Struct; m holds JSON values only.
func mustStruct(m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	if err != nil {
		panic(err)
	}
	return s
}
