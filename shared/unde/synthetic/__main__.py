"""``python -m unde.synthetic seed|serve`` — seed a staging DB / serve images from the shell."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from unde.synthetic.catalog import SCALES


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m unde.synthetic")
    sub = parser.add_subparsers(dest="cmd", required=True)
    seed_p = sub.add_parser("seed", help="generate the synthetic mall into a staging DB + data dir")
    seed_p.add_argument("--staging-url", required=True)
    seed_p.add_argument("--data-dir", type=Path, required=True)
    seed_p.add_argument("--scale", choices=SCALES, default="small")
    seed_p.add_argument("--seed", type=int, default=7)
    seed_p.add_argument("--image-base-url", default="http://127.0.0.1:8090")
    seed_p.add_argument("--now", type=datetime.fromisoformat, default=None)
    seed_p.add_argument("--street-photos", type=int, default=None)
    seed_p.add_argument("--no-images", action="store_true", help="render catalog images lazily")
    serve_p = sub.add_parser("serve", help="serve data_dir/images over HTTP")
    serve_p.add_argument("--data-dir", type=Path, required=True)
    serve_p.add_argument("--host", default="127.0.0.1")
    serve_p.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    if args.cmd == "seed":
        from unde.synthetic.seed import seed_dataset

        report = seed_dataset(
            args.staging_url,
            args.data_dir,
            scale=args.scale,
            seed=args.seed,
            image_base_url=args.image_base_url,
            now=args.now,
            street_photos=args.street_photos,
            render_images=not args.no_images,
        )
        print(report.summary())
        return 0
    from unde.synthetic.image_server import serve_images

    print(f"serving {args.data_dir}/images on http://{args.host}:{args.port}")
    serve_images(args.data_dir, args.host, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
