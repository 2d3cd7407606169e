"""`unde recognize PHOTO [--mall NAME] [--json|--stream]`: call the orchestrator like the app does."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from unde import devstack
from unde.commands.common import add_parser
from unde.pipeline.present import describe_response


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(subparsers, "recognize", "recognize the garments in a photo (file or URL)")
    parser.add_argument("photo", help="a JPEG/PNG/WebP file or an http(s) URL")
    parser.add_argument("--mall", default=None, help="the shopper's mall, e.g. 'Dubai Hills Mall'")
    parser.add_argument("--user-id", default=None)
    parser.add_argument("--url", default=devstack.BY_NAME["orchestrator"].url, help="orchestrator URL")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--json", action="store_true", help="print the raw JSON response")
    mode.add_argument("--stream", action="store_true", help="print the streamed events as they arrive")
    parser.set_defaults(func=run)


def post_photo(client: httpx.Client, base_url: str, photo: str, mall: str | None,
               user_id: str | None = None, stream: bool = False) -> httpx.Response:
    """POST the photo the way the mobile app does: an upload, or a JSON body with its URL."""
    fields = {key: value for key, value in (("user_mall", mall), ("user_id", user_id)) if value}
    headers = {"accept": "text/event-stream"} if stream else {}
    if photo.startswith(("http://", "https://")):
        request = client.build_request("POST", f"{base_url}/recognize", json={"photo_url": photo, **fields},
                                       headers=headers)
    else:
        data = Path(photo).read_bytes()
        request = client.build_request("POST", f"{base_url}/recognize", files={"image": (Path(photo).name, data)},
                                       data=fields, headers=headers)
    return client.send(request, stream=stream)


def run(args: argparse.Namespace) -> int:
    with httpx.Client(timeout=60.0) as client:
        response = post_photo(client, args.url, args.photo, args.mall, args.user_id, args.stream)
        if args.stream:
            for line in response.iter_lines():
                if line:
                    print(line)
            return 0 if response.status_code == 200 else 1
        body: dict[str, Any] = response.json()
    if response.status_code != 200:
        print(f"HTTP {response.status_code}: {json.dumps(body)}", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2) if args.json else describe_response(body))
    return 0
