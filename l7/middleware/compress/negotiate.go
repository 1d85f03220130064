package compress

// Accept-Encoding negotiation (RFC 9110 12.5.3), without allocating.

// negotiate picks the encoding to use for a request whose Accept-Encoding
// field lines are values, among prefs (the server's order of
// preference): the one with the highest q-value above 0, the earlier in
// prefs on a tie. A coding the client does not name gets the q-value of
// "*" when it sent one, else 0. No Accept-Encoding at all, or an empty
// one, means identity only (as every server reads it). ok is false when
// nothing fits: the response is sent as it is.
func negotiate(values [][]byte, prefs []*algorithm) (best *algorithm, ok bool) {
	bestQ := 0
	for _, a := range prefs {
		q, named := 0, false
		star := -1
		for _, v := range values {
			forEachCoding(v, func(coding []byte, cq int) {
				switch {
				case isCoding(coding, a):
					if !named || cq > q {
						q = cq
					}
					named = true
				case len(coding) == 1 && coding[0] == '*':
					star = max(star, cq)
				}
			})
		}
		if !named && star >= 0 {
			q = star
		}
		if q > bestQ {
			best, bestQ = a, q
		}
	}
	return best, best != nil
}

// isCoding compares a coding of the header with a's names, ignoring case.
func isCoding(coding []byte, a *algorithm) bool {
	return equalFold(coding, a.token) || a.alias != "" && equalFold(coding, a.alias)
}

// forEachCoding calls f with each coding of an Accept-Encoding value and
// its q-value in thousandths (1000 when absent; 0 when malformed, so a
// coding with a weight that cannot be read is never chosen).
func forEachCoding(v []byte, f func(coding []byte, q int)) {
	for len(v) > 0 {
		elem := v
		if i := indexByte(v, ','); i >= 0 {
			elem, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		coding, params := elem, []byte(nil)
		if i := indexByte(elem, ';'); i >= 0 {
			coding, params = elem[:i], elem[i+1:]
		}
		coding = trimOWS(coding)
		if len(coding) == 0 {
			continue
		}
		f(coding, qValue(params))
	}
}

// qValue reads the weight among an element's parameters ("q=0.5").
func qValue(params []byte) int {
	for len(params) > 0 {
		p := params
		if i := indexByte(params, ';'); i >= 0 {
			p, params = params[:i], params[i+1:]
		} else {
			params = nil
		}
		p = trimOWS(p)
		if len(p) >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=' {
			return parseQ(trimOWS(p[2:]))
		}
	}
	return 1000
}

// parseQ parses a qvalue: "0", "0.", "0.d{1,3}", "1", "1.", "1.0{1,3}".
// Anything else gives 0.
func parseQ(b []byte) int {
	if len(b) == 0 || len(b) > 5 || b[0] != '0' && b[0] != '1' {
		return 0
	}
	q := int(b[0]-'0') * 1000
	if len(b) == 1 {
		return q
	}
	if b[1] != '.' {
		return 0
	}
	scale := 100
	for _, c := range b[2:] {
		if c < '0' || c > '9' {
			return 0
		}
		q += int(c-'0') * scale
		scale /= 10
	}
	if q > 1000 {
		return 0
	}
	return q
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold compares ASCII case-insensitively.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c, d := b[i], s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}
