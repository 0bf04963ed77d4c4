"""``detpipe data synth | validate | yolo | merge``: dataset tooling."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from detpipe.cli.options import existing_dir, existing_file, non_negative_int, positive_int

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="synthesize, validate and convert COCO-format datasets")
    data_sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = data_sub.add_parser(
        "synth",
        help="render a synthetic, learnable COCO-format detection dataset",
        description="Render real JPEG images of shapes whose classes differ in outline, colour and "
        "pattern, on textured, cluttered backgrounds: long-tailed (Zipf) class frequencies, objects "
        "from COCO-small to COCO-large, occlusion (a mostly hidden object is not annotated), ~7% "
        "images without objects, ~2% with an iscrowd=1 cluster of tiny objects, varied aspect "
        "ratios. Writes OUT/images/{train2017,val2017}/000000000001.jpg ... and "
        "OUT/annotations/instances_{train2017,val2017}.json; prints a JSON summary (images, "
        "instances per class and COCO size bucket). Same flags, same bytes.",
    )
    p.add_argument("--out", required=True, help="output dataset root (replaced atomically)")
    p.add_argument("--images", type=positive_int, default=400, help="train images (default: 400)")
    p.add_argument("--val-images", type=positive_int, default=None, help="val images (default: images/4)")
    p.add_argument(
        "--classes", type=positive_int, default=6, help="number of classes, at most 16 (default: 6)"
    )
    p.add_argument("--imgsz", type=positive_int, default=320, help="longest image side in px (default: 320)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed, >= 0 (default: 0)")
    p.set_defaults(func=_synth)

    p = data_sub.add_parser(
        "validate",
        help="check a COCO annotation file and report every problem",
        description="Check a COCO detection annotation file: JSON syntax, required keys, duplicate "
        "ids, dangling image/category references, empty or out-of-image boxes and (with "
        "--images-dir) missing image files. Prints every problem as 'file: where: reason' and "
        "exits 2 when there is any; writes nothing.",
    )
    p.add_argument("--annotations", required=True, type=existing_file, help="COCO instances_*.json")
    p.add_argument("--images-dir", type=existing_dir, default=None, help="check that image files exist here")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_validate)

    p = data_sub.add_parser(
        "yolo",
        help="convert COCO annotations to YOLO labels and dataset YAMLs",
        description="Write YOLO label files (class cx cy w h, normalized) for every image, link the "
        "images beside them in the layout ultralytics expects (OUT/images/<split>, "
        "OUT/labels/<split>) and write a dataset YAML (path/train/val/names); with --subsets, "
        "one YAML per subset list, like the study's generated configs. Class indices follow the "
        "category ids in ascending order; crowd annotations are skipped; boxes are clipped to the "
        "image. Split names come from the image dir names (e.g. train2017). Prints the YAML paths.",
    )
    p.add_argument("--annotations", required=True, type=existing_file, help="train COCO instances_*.json")
    p.add_argument("--images-dir", required=True, type=existing_dir, help="directory of the train images")
    p.add_argument("--val-annotations", type=existing_file, default=None, help="val COCO json")
    p.add_argument("--val-images-dir", type=existing_dir, default=None, help="directory of the val images")
    p.add_argument(
        "--subsets",
        type=existing_dir,
        default=None,
        help="a 'detpipe subsets' output dir: each <split>_<pct>_<strategy>.txt gets OUT/<stem>.yaml",
    )
    p.add_argument("--out", required=True, help="output dataset root (replaced atomically)")
    p.set_defaults(func=_yolo)
    register_merge(data_sub)


def register_merge(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser(
        "merge",
        help="add newly labeled images (a COCO file) to a COCO training set",
        description="Validate both COCO files (and their image files), then append the added "
        "file's images and annotations to the base with new ids (after the base's largest). "
        "Categories are matched by name: ids numbered otherwise are remapped to the base's; a "
        "category the base lacks is refused. An added image already in the base (the same file "
        "name, or the same content by sha256) is refused, naming it, and nothing is written. The "
        "merged file is written atomically (--out may be --base). Prints a JSON summary. Exit 0; "
        "bad input 2.",
        epilog="example: detpipe data merge --base data/annotations/instances_train2017.json "
        "--add labeled/round-1.json --images-dir data/images/train2017 --out train-r1.json",
    )
    p.add_argument("--base", required=True, type=existing_file, help="the training set's COCO file")
    p.add_argument("--add", required=True, type=existing_file, help="COCO file of the newly labeled images")
    p.add_argument("--images-dir", required=True, type=existing_dir, help="directory of the base's images")
    p.add_argument(
        "--add-images-dir", type=existing_dir, default=None,
        help="directory of the added images (default: --images-dir)",
    )  # fmt: skip
    p.add_argument("--out", required=True, type=Path, help="the merged COCO file (written atomically)")
    p.set_defaults(func=_merge)


def _merge(args: argparse.Namespace) -> int:
    from detpipe.data.merge import MergeConfig, merge_coco

    cfg = MergeConfig(args.base, args.add, args.images_dir, args.out, args.add_images_dir)
    print(json.dumps(merge_coco(cfg), indent=2))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from detpipe.data.synth import SynthConfig, synthesize

    summary = synthesize(
        SynthConfig(
            out=args.out,
            images=args.images,
            val_images=args.val_images,
            classes=args.classes,
            imgsz=args.imgsz,
            seed=args.seed,
        )
    )
    print(json.dumps(summary, indent=2))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from detpipe.data.coco import load_coco

    ds = load_coco(args.annotations, args.images_dir)  # raises ValidationFailed -> exit 2
    summary = {
        "annotations": str(args.annotations),
        "images": ds.num_images,
        "instances": ds.num_annotations,
        "classes": ds.num_classes,
        "empty_images": int((ds.instances_per_image() == 0).sum()),
        "crowd_instances": int(ds.ann_iscrowd.sum()),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{args.annotations}: OK — {summary['images']} images "
            f"({summary['empty_images']} without annotations), {summary['instances']} instances "
            f"({summary['crowd_instances']} crowd), {summary['classes']} classes",
            file=sys.stdout,
        )
    return 0


def _yolo(args: argparse.Namespace) -> int:
    from detpipe.data.yolo import YoloConfig, convert

    yamls = convert(
        YoloConfig(
            annotations=args.annotations,
            images_dir=args.images_dir,
            val_annotations=args.val_annotations,
            val_images_dir=args.val_images_dir,
            subsets_dir=args.subsets,
            out=args.out,
        )
    )
    for path in yamls:
        print(path)
    return 0
