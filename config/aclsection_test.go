package config

import "testing"

// TestACLSectionWithoutFile: an acl section whose file line is missing (or
// commented out) is refused like an empty acl.file. It was taken as no
// ACL: every source could connect to every listener, with only the
// start-up warning that there was no acl section.
func TestACLSectionWithoutFile(t *testing.T) {
	for _, yaml := range []string{"acl:\n#  file: relay_hba.conf\nlisteners:" + one, "acl: {}\nlisteners:" + one, "acl: {file: ''}\nlisteners:" + one} {
		es := problemsOf(t, yaml)
		if len(es) != 1 || es[0].Path != "acl.file" || es[0].Where != "t.yaml:1" ||
			es[0].Msg != "missing or empty: name the ACL file, or remove the acl section to let every source connect" {
			t.Errorf("%q: problems %q", yaml, es)
		}
	}
}
