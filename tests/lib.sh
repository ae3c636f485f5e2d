# tests/lib.sh: what the shell tests share (sourced, not run): counters and checks.
# The sourcing script sets TMP (its scratch folder) first; each check counts a pass or
# prints FAIL with what it saw; finish prints the tally and sets the exit status.
pass=0 fail=0

expect() { # expect STATUS DESCRIPTION -- command...: the command exits with STATUS
    want=$1 what=$2
    shift 3
    "$@" >"$TMP/out" 2>"$TMP/err"
    got=$?
    if [ "$got" = "$want" ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL: $what: exit $got, expected $want"
        show_failure
    fi
}

show_failure() { # what expect prints of a failed command; a script may redefine it
    sed 's/^/  | /' "$TMP/out" "$TMP/err" | tail -20
}

expect_err() { # expect_err TEXT...: the last command's stderr is one line holding each TEXT
    for s in "$@"; do
        if grep -qF -- "$s" "$TMP/err"; then pass=$((pass + 1)); else
            fail=$((fail + 1)); echo "FAIL: stderr lacks \"$s\":"; sed 's/^/  | /' "$TMP/err"
        fi
    done
    if [ "$(wc -l <"$TMP/err")" -ne 1 ]; then
        fail=$((fail + 1)); echo "FAIL: error is not one line"; sed 's/^/  | /' "$TMP/err"
    fi
}

json_ok() { # json_ok EXPR: the last stdout parses as JSON and the python EXPR holds for it (d)
    if python3 -c "import json,sys; d=json.load(open('$TMP/out')); sys.exit(0 if ($1) else 1)"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1)); echo "FAIL: JSON check: $1"; head -c 600 "$TMP/out"
    fi
}

ok() { # ok DESCRIPTION -- command...: the command succeeds
    what=$1
    shift 2
    if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $what"; fi
}

finish() { # the tally; exit status 0 only when nothing failed
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}
