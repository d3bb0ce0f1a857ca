package recorder

import "testing"

// A secret in a message set apart never reaches the audit database.
func TestMaskSecrets(t *testing.T) {
	for in, want := range map[string]string{
		`{"jupyter_token":"abc","id":"x"}`:            `{"jupyter_token":"***","id":"x"}`,
		`{"Jupyter_Token" : "a\"b\\c", "x":"y"}`:      `{"Jupyter_Token" : "***", "x":"y"}`,
		`{"id":"x","jupyter_token":"a","z":"q"} junk`: `{"id":"x","jupyter_token":"***","z":"q"} junk`,
		`{"message":"no secret here"}`:                `{"message":"no secret here"}`,
	} {
		if got := string(maskSecrets([]byte(in))); got != want {
			t.Errorf("maskSecrets(%s) = %s, want %s", in, got, want)
		}
	}
}
