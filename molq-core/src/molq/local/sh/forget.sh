# forget: job ids as arguments; drops their spool entries.
for sid do rm -f -- "$spool/jobs/$sid.json" "$spool/jobs/$sid.dir"; done
