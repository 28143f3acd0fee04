#!/bin/sh
# compare.sh: hephc's evaluation beside Nix 2.8's (Debian's nix-bin) on the
# same graph shapes (bench/gen), runs alternating, medians printed as the
# table of issue 20 with the load during the run. Not part of CI.
#
#   bench/compare.sh [ROUNDS]        (from the repository's root; default 3)
#
# Rows: cold evaluation of 10k and 30k packages (hephc with an empty
# evaluation cache, Nix with its .drv files already valid, as
# nix-instantiate leaves them); an unchanged 10k configuration again
# (hephc's evaluation cache vs nix-instantiate --readonly-mode); one
# package of 10k edited, evaluated again by a new process (the CLI; a
# long-lived process keeps eval.Fast's per-file cache: BenchmarkEvalEdit).
# Without nix-instantiate on PATH the Nix column says so.
#
# Realize rows: the graph BenchmarkRealizeTrivial builds (bench/gen
# -trivial: 200 independent derivations running the static
# internal/testbuilder, an input of each), realized with -j 2 in sandboxes
# by the CLIs (`hephc realize`, `nix-build --option sandbox true`), each
# round with a new salt so that everything builds, into stores kept across
# rounds; then the same command again (nothing to do). GC row (GC=0 skips
# it; one round): hephc's BenchmarkGC (./store: 100,000 paths, 30,000 of
# them garbage, references among them; time to return and until the files
# are gone) beside `nix-store --gc` on 100,000 paths added with nix-store
# --add, 70,000 of them rooted by symlinks in gcroots (no references: Nix
# traverses less than hephc here).
set -eu
rounds=${1:-3}
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/hephc" ./cmd/hephc
for n in 10000 30000; do
	go run ./bench/gen -n $n -hephc "$work/h$n" -nix "$work/n$n.nix"
done
CGO_ENABLED=0 go build -o "$work/testbuilder" ./internal/testbuilder
go build -o "$work/gen" ./bench/gen
have_nix=0
if command -v nix-instantiate >/dev/null 2>&1; then
	have_nix=1
	for n in 10000 30000; do nix-instantiate "$work/n$n.nix" >/dev/null 2>&1; done # .drv files valid
fi
load0=$(cut -d' ' -f1-3 /proc/loadavg)

# run NAME CMD...: one timed run, appended to $work/NAME as "wall KiB
# user system" (seconds; CPU time says more than wall time on a loaded
# machine).
run() {
	name=$1
	shift
	/usr/bin/time -f '%e %M %U %S' -o "$work/t" "$@" >/dev/null 2>"$work/err" || {
		cat "$work/err" >&2
		exit 1
	}
	cat "$work/t" >>"$work/$name"
}

i=0
while [ $i -lt "$rounds" ]; do
	i=$((i + 1))
	for n in 10000 30000; do
		cache=$(mktemp -d)
		run "hephc-cold-$n" env HEPHC_CACHE="$cache" "$work/hephc" eval --no-cache "$work/h$n"
		if [ $n = 10000 ]; then
			run hephc-warm env HEPHC_CACHE="$cache" "$work/hephc" eval "$work/h$n"
			# one package edited: its version, so it and its dependents change
			sed -i "s/version: \"1.5000[^\"]*\"/version: \"1.5000-e$i\"/" "$work/h$n/pkgs005.cue"
			run hephc-edit env HEPHC_CACHE="$cache" "$work/hephc" eval "$work/h$n"
		fi
		rm -rf "$cache"
		if [ $have_nix = 1 ]; then
			run "nix-cold-$n" nix-instantiate "$work/n$n.nix"
			[ $n = 10000 ] && run nix-warm nix-instantiate --readonly-mode "$work/n$n.nix"
		fi
	done
	# realize 200 trivial derivations, then again (nothing to do)
	rm -rf "$work/triv"
	mkdir -p "$work/triv/nix"
	"$work/gen" -n 200 -trivial "$work/testbuilder" -salt "r$i-$$" -hephc "$work/triv/hephc" -nix "$work/triv/nix/t.nix"
	run hephc-realize env HEPHC_CACHE="$work/hcache" "$work/hephc" --store "$work/hstore" realize -j 2 --no-link "$work/triv/hephc"
	run hephc-realize-noop env HEPHC_CACHE="$work/hcache" "$work/hephc" --store "$work/hstore" realize -j 2 --no-link "$work/triv/hephc"
	if [ $have_nix = 1 ]; then
		run nix-realize nix-build --option sandbox true -j 2 --no-out-link "$work/triv/nix/t.nix"
		run nix-realize-noop nix-build --option sandbox true -j 2 --no-out-link "$work/triv/nix/t.nix"
	fi
done
if [ "${GC:-1}" != 0 ]; then
	# hephc: its benchmark (the store it makes is the test's own)
	(cd "$root" && go test -run '^$' -bench 'BenchmarkGC' -benchtime 1x ./store) >"$work/gcbench" 2>&1 || {
		cat "$work/gcbench" >&2
		exit 1
	}
	awk '/^BenchmarkGC/ { for (i = 1; i <= NF; i++) { if ($(i+1) == "ns/op") r = $i / 1e9; if ($(i+1) == "cpu-s/op") c = $i; if ($(i+1) == "done-s/op") d = $i } } END { printf "%.2f s to return, %.2f s until the files are gone (%.1f s CPU)\n", r, d, c }' "$work/gcbench" >"$work/hephc-gc"
	if [ $have_nix = 1 ]; then
		nix-store --gc >/dev/null 2>&1 # start from a store without garbage
		mkdir -p "$work/gcfiles" /nix/var/nix/gcroots/hephc-bench
		trap 'rm -rf "$work" /nix/var/nix/gcroots/hephc-bench' EXIT
		k=0
		while [ $k -lt 100 ]; do # 100 batches of 1,000 directories, each with one file
			rm -rf "$work/gcfiles"/*
			j=0
			while [ $j -lt 1000 ]; do
				mkdir "$work/gcfiles/p$k-$j" && echo "synthetic output $k $j" >"$work/gcfiles/p$k-$j/data"
				j=$((j + 1))
			done
			nix-store --add "$work/gcfiles"/* >>"$work/gcpaths"
			k=$((k + 1))
		done
		head -n 70000 "$work/gcpaths" | awk -v d=/nix/var/nix/gcroots/hephc-bench '{ printf "%s %s/r%d\n", $1, d, NR }' | xargs -n 200 -P 1 sh -c 'while [ $# -gt 0 ]; do ln -s "$1" "$2"; shift 2; done' sh
		sync
		/usr/bin/time -f '%e %M %U %S' -o "$work/t" nix-store --gc >"$work/gcout" 2>&1
		awk '{ printf "%.2f s (%.1f s CPU)\n", $1, $3 + $4 }' "$work/t" >"$work/nix-gc"
		rm -rf /nix/var/nix/gcroots/hephc-bench
		nix-store --gc >/dev/null 2>&1
	fi
fi
load1=$(cut -d' ' -f1-3 /proc/loadavg)

# median NAME: "wall s (CPU s), MiB" of the runs' medians.
median() {
	[ -f "$work/$1" ] || {
		echo "—"
		return
	}
	s=$(cut -d' ' -f1 "$work/$1" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
	k=$(cut -d' ' -f2 "$work/$1" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
	c=$(awk '{print $3 + $4}' "$work/$1" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
	echo "$s s ($c s CPU), $((k / 1024)) MiB"
}
ratio() {
	[ -f "$work/$1" ] && [ -f "$work/$2" ] || {
		echo "—"
		return
	}
	a=$(cut -d' ' -f1 "$work/$1" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
	b=$(cut -d' ' -f1 "$work/$2" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
	c=$(awk '{print $3 + $4}' "$work/$1" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
	d=$(awk '{print $3 + $4}' "$work/$2" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
	awk -v a="$a" -v b="$b" -v c="$c" -v d="$d" 'BEGIN { if (b > 0 && d > 0) printf "%.2f (CPU %.2f)\n", a / b, c / d; else print "—" }'
}
nixver=$( [ $have_nix = 1 ] && nix-instantiate --version | awk '{print $NF}' || echo "not installed")
echo "hephc $(git -C "$root" rev-parse --short HEAD) vs Nix $nixver; $rounds rounds alternating; medians; load $load0 → $load1 ($(nproc) cores)"
echo
echo "| work | hephc | Nix | ratio |"
echo "|---|---|---|---|"
echo "| evaluate 10k packages, cold vs Nix with its .drv files valid | $(median hephc-cold-10000) | $(median nix-cold-10000) | $(ratio hephc-cold-10000 nix-cold-10000) |"
echo "| evaluate 30k packages, same | $(median hephc-cold-30000) | $(median nix-cold-30000) | $(ratio hephc-cold-30000 nix-cold-30000) |"
echo "| evaluate 10k, hephc's cache warm vs nix-instantiate --readonly-mode | $(median hephc-warm) | $(median nix-warm) | $(ratio hephc-warm nix-warm) |"
echo "| 10k, one package edited, a new process (Nix: everything again) | $(median hephc-edit) | $(median nix-cold-10000) | $(ratio hephc-edit nix-cold-10000) |"
echo "| realize 200 trivial derivations, -j 2, sandboxed | $(median hephc-realize) | $(median nix-realize) | $(ratio hephc-realize nix-realize) |"
echo "| the same again, nothing to do | $(median hephc-realize-noop) | $(median nix-realize-noop) | $(ratio hephc-realize-noop nix-realize-noop) |"
if [ "${GC:-1}" != 0 ]; then
	echo "| GC of 30k garbage among 100k paths (one round) | $(cat "$work/hephc-gc") | $(cat "$work/nix-gc" 2>/dev/null || echo —) | — |"
fi
