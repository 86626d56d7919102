"""Time another revision's model against this one's, in one process, same weights, alternating runs.

    git worktree add /tmp/old <rev> && cp -r /tmp/old/setr /tmp/oldpkg/setr_old
    python benchmarks/compare_revisions.py --old /tmp/oldpkg --head pup --size 768

The other revision's package is imported under the name ``setr_old`` (its imports are relative),
built with the same configuration and loaded with this revision's weights; both run the same
input in turn (which goes first alternates), ``--repeats`` times, after a warm-up each. Prints the median latencies, their ratio
and the largest output difference. ``--new-path`` picks this revision's optimised or plain model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import setr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="folder that holds the other revision as the package setr_old")
    parser.add_argument("--head", default="pup", choices=["naive", "pup", "mla"])
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--new-path", default="optimized", choices=["optimized", "plain"])
    args = parser.parse_args()
    sys.path.insert(0, args.old)
    import setr_old  # noqa: PLC0415  (found only once --old is on the path)

    torch.manual_seed(0)
    name = f"setr_{args.head}_vitl_cityscapes"
    new = setr.create_model(name, img_size=args.size, aux_indices=[]).eval()
    old = setr_old.create_model(name, img_size=args.size, aux_indices=[]).eval()
    old.load_state_dict(new.state_dict())
    if args.new_path == "optimized":
        new = setr.optimize_for_inference(new)
    x = torch.randn(1, 3, args.size, args.size)
    runs: dict[str, list[float]] = {"old": [], "new": []}
    with torch.inference_mode():
        difference = (old(x) - new(x)).abs().max().item()  # also the warm-up
        for repeat in range(args.repeats):
            order = (("old", old), ("new", new)) if repeat % 2 == 0 else (("new", new), ("old", old))
            for label, model in order:  # alternate which goes first
                start = time.perf_counter()
                model(x)
                runs[label].append(time.perf_counter() - start)
    old_s, new_s = (statistics.median(runs[k]) for k in ("old", "new"))
    print(
        f"torch threads {torch.get_num_threads()}; {name} at {args.size}x{args.size}, {args.repeats} alternating runs"
    )
    for label in ("old", "new"):
        times = ", ".join(f"{t:.2f}" for t in runs[label])
        print(f"{label:>4}: median {statistics.median(runs[label]):.2f} s ({times})")
    print(f"old / new = {old_s / new_s:.3f}x; max |old - new| = {difference:.2e}")


if __name__ == "__main__":
    main()
