package acl_test

import (
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/edgerelay/relay/acl"
	"github.com/rs/zerolog"
)

func ExampleList_Explain() {
	l, err := acl.Parse(strings.NewReader(`
# TYPE  LISTENER  ADDRESS        ACTION
host    web       127.0.0.2/32   reject
host    web       127.0.0.0/8    allow
`), "relay_hba.conf")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, addr := range []string{"127.0.0.2", "127.0.0.3", "::ffff:127.0.0.3", "10.0.0.1"} {
		fmt.Println(addr, l.Explain("web", acl.ProtoTCP, netip.MustParseAddr(addr)))
	}
	// Output:
	// 127.0.0.2 reject by relay_hba.conf:3 (host web 127.0.0.2/32 reject)
	// 127.0.0.3 allow by relay_hba.conf:4 (host web 127.0.0.0/8 allow)
	// ::ffff:127.0.0.3 allow by relay_hba.conf:4 (host web 127.0.0.0/8 allow)
	// 10.0.0.1 reject: no matching line
}

func ExampleParse_error() {
	_, err := acl.Parse(strings.NewReader("host all all allow\n\nhost    cms-ftp  10.0.0.0/33 allow\n"), "relay_hba.conf")
	fmt.Println(err)
	// Output:
	// relay_hba.conf:3:18: invalid CIDR "10.0.0.0/33": prefix length must be 0-32 for IPv4
}

func ExampleSet_Guard() {
	var set acl.Set // no List yet: every client is admitted
	admit := set.Guard("web", acl.ProtoTCP, zerolog.New(os.Stdout))
	client := netip.MustParseAddrPort("127.0.0.2:40000")
	fmt.Println(admit(client))

	l, _ := acl.Parse(strings.NewReader("host web 127.0.0.2/32 reject\n"), "relay_hba.conf")
	set.Store(l) // what a reload does; the same admit sees it
	fmt.Println(admit(client))
	// Output:
	// true
	// {"level":"info","listener":"web","proto":"tcp","client":"127.0.0.2:40000","rule":"relay_hba.conf:1","line":"host web 127.0.0.2/32 reject","message":"acl rejected client"}
	// false
}
