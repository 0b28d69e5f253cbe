package acl

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// sameRule compares what a rule means, not where it was written.
func sameRule(a, b Rule) bool {
	return a.Proto == b.Proto && slices.Equal(a.Listeners, b.Listeners) &&
		a.Addr == b.Addr && a.Allow == b.Allow
}

func TestFormatRoundTrip(t *testing.T) {
	in := "# venue\nhost cms-ftp,rtb 192.168.1.0/24 allow\n" +
		"tcp ticket-printer 10.8.0.0 255.255.0.0 allow\n" +
		"udp all \\\n samenet allow\nhost all samehost allow\n" +
		"host web ::ffff:10.0.0.0/104 reject\nhost web 2001:db8::1 ffff:ffff:: allow\n" +
		"host all all reject\n"
	want := "host cms-ftp,rtb 192.168.1.0/24 allow\n" +
		"tcp ticket-printer 10.8.0.0/16 allow\n" +
		"udp all samenet allow\nhost all samehost allow\n" +
		"host web 10.0.0.0/8 reject\nhost web 2001:db8::/32 allow\n" +
		"host all all reject\n"
	var out bytes.Buffer
	if err := mustParse(t, in).Format(&out); err != nil {
		t.Fatal(err)
	}
	if out.String() != want {
		t.Errorf("Format:\n%s\nwant:\n%s", out.String(), want)
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"host all all reject\n",
		"# TYPE LISTENER ADDRESS ACTION\nhost cms-ftp,rtb 192.168.1.0/24 allow\nhost ticket-printer 10.8.0.0 255.255.0.0 allow\nhost all samenet allow\nhost all all reject\n",
		"tcp web 127.0.0.2/32 reject\nudp rtb ::1/128 allow\n",
		"host web, \\\n ftp 2001:db8:: ffff:ffff:: allow # why\r\n",
		"host web ::ffff:10.0.0.0/104 allow\nhost web samehost reject\n",
		"host    cms-ftp  10.0.0.0/33 allow\n",
		"host web 10.0.0.5 allow\n",
		"host ,web all allow\n",
		"\\\n\\\n",
		"host all 0.0.0.0 0.0.0.0 allow",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		l, err := testOpts.Parse(strings.NewReader(text), "f.conf")
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error %T is not a *ParseError: %v", err, err)
			}
			return
		}
		var first bytes.Buffer
		if err := l.Format(&first); err != nil {
			t.Fatal(err)
		}
		again, err := testOpts.Parse(bytes.NewReader(first.Bytes()), "f.conf")
		if err != nil {
			t.Fatalf("canonical form does not parse: %v\n%s", err, first.String())
		}
		if len(again.rules) != len(l.rules) {
			t.Fatalf("%d rules, %d after round trip", len(l.rules), len(again.rules))
		}
		for i := range l.rules {
			if !sameRule(l.rules[i], again.rules[i]) {
				t.Fatalf("rule %d: %q became %q", i, l.rules[i].String(), again.rules[i].String())
			}
		}
		var second bytes.Buffer
		again.Format(&second)
		if first.String() != second.String() {
			t.Fatalf("canonical form is not stable:\n%s\n---\n%s", first.String(), second.String())
		}
	})
}
