package acl

import "strings"

// pos is where an item starts in the file.
type pos struct{ line, col int }

// item is a lexical item of a logical line: a word, or a comma (text ",").
type item struct {
	text string
	pos  pos
}

// field is one column: a single word, or for LISTENER a comma list, whose
// items alternate between words and commas in any arrangement.
type field []item

// lexLine appends the items of one physical line to items. It reports the
// position just past the line's last character and whether the line ends in
// a continuation backslash.
func lexLine(items []item, line string, lineNo int) ([]item, pos, bool) {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	line = strings.TrimRight(line, " \t\r\v\f")
	cont := strings.HasSuffix(line, `\`)
	if cont {
		line = line[:len(line)-1]
	}
	col := 1
	i := 0
	for i < len(line) {
		c := line[i]
		switch {
		case isSpace(c):
			i++
			col++
		case c == ',':
			items = append(items, item{",", pos{lineNo, col}})
			i++
			col++
		default:
			start, startCol := i, col
			for i < len(line) && !isSpace(line[i]) && line[i] != ',' {
				if line[i]&0xC0 != 0x80 { // count characters, not UTF-8 bytes
					col++
				}
				i++
			}
			items = append(items, item{line[start:i], pos{lineNo, startCol}})
		}
	}
	return items, pos{lineNo, col}, cont
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'
}

// fields appends to fs the columns of items: a comma joins the words on
// either side into one column, whitespace alone separates columns. Each
// column is a subslice of items.
func fields(fs []field, items []item) []field {
	start := 0
	for i := 1; i <= len(items); i++ {
		if i == len(items) || items[i].text != "," && items[i-1].text != "," {
			fs = append(fs, items[start:i])
			start = i
		}
	}
	return fs
}
