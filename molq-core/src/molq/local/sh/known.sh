# known: job ids as arguments; prints those the spool has handed over (queued, being started,
# running or begun).
for sid do
    [ -f "$spool/jobs/$sid.json" ] || continue
    if molq_is_queued "$sid" || molq_is_claimed "$sid" || molq_has_entry "$sid" ||
        [ -e "$spool/jobs/$sid.dir/begun" ]; then
        printf '%s\n' "$sid"
    fi
done
