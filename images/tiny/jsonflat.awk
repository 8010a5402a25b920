# jsonflat.awk: flatten a JSON document into one "PATH<TAB>VALUE" line per scalar,
# for the shell scripts of the Nubis tiny guest (busybox awk, no jq).
#
#   {"a":{"b":[1,"x"]},"c":true}   ->   a.b.0<TAB>1   a.b.1<TAB>x   c<TAB>true
#
# Object keys are joined with ".", array elements are numbered from 0. Strings are
# unescaped (\uXXXX above 0x7f becomes "?"); tabs and newlines inside strings
# become spaces, so every value is one line. Numbers, true, false and null are
# printed as written. On malformed input it prints what it parsed and exits 1.

function ws() {
    while (i <= n && index(" \t\r\n", substr(s, i, 1)))
        i++
}

function hexval(h,    k, v, d) {
    v = 0
    for (k = 1; k <= length(h); k++) {
        d = index("0123456789abcdef", tolower(substr(h, k, 1)))
        if (d == 0)
            return -1
        v = v * 16 + d - 1
    }
    return v
}

# At a '"': returns the unescaped string and moves past the closing quote.
function str(    c, out, v) {
    i++
    out = ""
    while (i <= n) {
        if (match(substr(s, i, 256), /^[^"\\]+/)) {
            out = out substr(s, i, RLENGTH)
            i += RLENGTH
            continue
        }
        c = substr(s, i, 1)
        if (c == "\"") {
            i++
            return out
        }
        # backslash escape
        i++
        c = substr(s, i, 1)
        if (c == "n" || c == "r" || c == "t")
            out = out " "
        else if (c == "b" || c == "f")
            out = out ""
        else if (c == "u") {
            v = hexval(substr(s, i + 1, 4))
            i += 4
            if (v >= 32 && v < 127)
                out = out sprintf("%c", v)
            else if (v >= 0 && v < 32)
                out = out " "
            else
                out = out "?"
        } else
            out = out c
        i++
    }
    bad = 1
    return out
}

function emit(p, v) {
    gsub(/[\t\r\n]/, " ", v)
    gsub(/[\t\r\n]/, " ", p)
    printf "%s\t%s\n", p, v
}

function sub_path(p, k) {
    if (p == "")
        return k
    return p "." k
}

function value(p,    c, k, idx) {
    ws()
    c = substr(s, i, 1)
    if (c == "{") {
        i++
        ws()
        if (substr(s, i, 1) == "}") {
            i++
            return
        }
        while (i <= n) {
            ws()
            if (substr(s, i, 1) != "\"") {
                bad = 1
                return
            }
            k = str()
            ws()
            if (substr(s, i, 1) != ":") {
                bad = 1
                return
            }
            i++
            value(sub_path(p, k))
            if (bad)
                return
            ws()
            c = substr(s, i, 1)
            i++
            if (c == "}")
                return
            if (c != ",") {
                bad = 1
                return
            }
        }
        bad = 1
    } else if (c == "[") {
        i++
        ws()
        if (substr(s, i, 1) == "]") {
            i++
            return
        }
        idx = 0
        while (i <= n) {
            value(sub_path(p, idx))
            idx++
            if (bad)
                return
            ws()
            c = substr(s, i, 1)
            i++
            if (c == "]")
                return
            if (c != ",") {
                bad = 1
                return
            }
        }
        bad = 1
    } else if (c == "\"") {
        emit(p, str())
    } else if (match(substr(s, i, 64), /^(-?[0-9][-+0-9.eE]*|true|false|null)/)) {
        emit(p, substr(s, i, RLENGTH))
        i += RLENGTH
    } else {
        bad = 1
    }
}

{ s = s $0 "\n" }

END {
    n = length(s)
    i = 1
    bad = 0
    value("")
    exit bad
}
