#!/bin/bash
# Capture the small trace.dat fixture: private instance, kmem+vmalloc+compaction events,
# trace_marker markers, a tiny workload; then trace-cmd extract with a reduced kallsyms
# (only the symbols the captured call sites and markers need) bind-mounted over /proc/kallsyms
# in a private mount namespace, so the file stays small.
set -u
OUT=/tmp/fixture; rm -rf $OUT; mkdir -p $OUT
MNT=$(mktemp -d /tmp/kmd_tracefs.XXXXXX); mount -t tracefs nodev $MNT || exit 1
INST=kmemdes_fixture_$$
I=$MNT/instances/$INST
cleanup() { [ -d $I ] && { echo 0 > $I/tracing_on; echo > $I/set_event; rmdir $I; }; umount $MNT; rmdir $MNT; }
trap cleanup EXIT
mkdir $I; echo 0 > $I/tracing_on; echo 4096 > $I/buffer_size_kb; echo > $I/trace
echo nohash-ptr > $I/trace_options
echo 1 > $I/events/kmem/enable; echo 1 > $I/events/vmalloc/enable; echo 1 > $I/events/compaction/enable
echo 1 > $I/tracing_on
echo "capture_start name=tracedat_small" > $I/trace_marker
sh -c 'ls -l /usr/bin > /dev/null; head -c 20000 /dev/urandom | gzip -1 > /dev/null; sleep 0.05'
echo "capture_end name=tracedat_small rc=0" > $I/trace_marker
echo 0 > $I/tracing_on
cat $I/trace > $OUT/trace.txt
for c in $I/per_cpu/cpu*; do echo "== $(basename $c)"; cat $c/stats; done > $OUT/percpu_stats.txt
# reduced kallsyms: every symbol named as a call site in the text, tracing_mark_write, and the
# symbol after each (so every kept function keeps its extent)
grep -o 'call_site=[^ ]*' $OUT/trace.txt | sed 's/call_site=//; s/+0x.*//' | sort -u > $OUT/.syms
echo tracing_mark_write >> $OUT/.syms
awk 'NR==FNR{want[$1]=1; next} {line[FNR]=$0; name[FNR]=$3} END{for(i=1;i<=FNR;i++) if (want[name[i]]) {print line[i]; if (i<FNR) print line[i+1]}}' $OUT/.syms /proc/kallsyms | sort -u > $OUT/.kallsyms
sort -k1,1 $OUT/.kallsyms -o $OUT/.kallsyms
unshare -m sh -c "mount --bind $OUT/.kallsyms /proc/kallsyms && cd $OUT && trace-cmd extract -B $INST -o trace.dat" > $OUT/tool.log 2>&1
echo extract rc $?
rm -f $OUT/.syms $OUT/.kallsyms
uname -a > $OUT/uname
