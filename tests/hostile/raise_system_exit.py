# expect: failed
raise SystemExit
