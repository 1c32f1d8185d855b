# bench/compare.gp - the chart of bench/compare (which writes the data file):
#   gnuplot -e "datafile='compare.dat'; outfile='compare.png'; charttitle='...'" bench/compare.gp
# Data columns: 1 shape label; then median, min, max wall seconds of
# sstfetch (2-4), aria2 (5-7), curl (8-10), net limit (11-13), disk limit
# (14-16); 17 limit median; then median, min, max of time/limit paired per
# run for sstfetch (18-20), aria2 (21-23), curl (24-26); then sstfetch
# --split=N, run on the wan shapes only: wall (27-29) and time/limit (30-32).
# '?' = not run. On the wan shapes (every connection capped at the same
# rate) the net column is measured but the limit is max(disk, bytes / (16 x
# rate)).
if (!exists("datafile")) datafile = "compare.dat"
if (!exists("outfile")) outfile = "compare.png"
if (!exists("charttitle")) charttitle = "bench/compare"
if (!exists("splitlabel")) splitlabel = "sstfetch --split=16"

set terminal pngcairo size 1200,1000 font ",10" noenhanced
set output outfile
set datafile missing '?'
stats datafile using 0 nooutput
nshapes = STATS_records
set multiplot layout 2,1 title charttitle
set xrange [-0.6:nshapes-0.4]
set bmargin 4

set style data histogram
set style histogram errorbars gap 1 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top left horizontal
set xtics nomirror
set bars 0.5

c1 = "#1f77b4"; c2 = "#ff7f0e"; c3 = "#2ca02c"; c4 = "#c7c7c7"; c5 = "#7f7f7f"
c6 = "#9ecae1"

set title "Median wall time per shape (bars: min..max); dashed: limit = max(net, disk); on wan max(disk, 16 x rate)"
set logscale y
set ylabel "seconds (log scale)"
set yrange [*:*]
plot datafile using 2:3:4:xtic(1) title "sstfetch" lc rgb c1, \
     '' using 27:28:29 title splitlabel lc rgb c6, \
     '' using 5:6:7 title "aria2c + xxhsum -c + sync" lc rgb c2, \
     '' using 8:9:10 title "curl -Z + xxhsum -c + sync" lc rgb c3, \
     '' using 11:12:13 title "net limit (curl -Z > /dev/null)" lc rgb c4, \
     '' using 14:15:16 title "disk limit (fio io_uring direct)" lc rgb c5, \
     '' using ($0-0.45):17:(0.9):(0) with vectors nohead lw 2.5 dt 2 lc rgb "black" title "limit"

set title "Time / limit, paired within each run (1 = as fast as the slower of network and disk)"
unset logscale y
set ylabel "time / limit"
set yrange [0:*]
plot datafile using 18:19:20:xtic(1) title "sstfetch" lc rgb c1, \
     '' using 30:31:32 title splitlabel lc rgb c6, \
     '' using 21:22:23 title "aria2c + xxhsum -c + sync" lc rgb c2, \
     '' using 24:25:26 title "curl -Z + xxhsum -c + sync" lc rgb c3, \
     1 with lines dt 2 lw 2 lc rgb "black" title "limit"
unset multiplot
