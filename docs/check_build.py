"""Check a built documentation site: an API page per public name, gallery images.

Usage: ``python docs/check_build.py docs/_build/html`` (exits 1 on a gap).
"""

import glob
import os
import sys

import parml
import parml.plot
import parml.scheduler
import parml.tracing


def public_names():
    names = [f"parml.{n}" for n in parml.__all__ if not n.startswith("__")]
    for module in (parml.scheduler, parml.tracing, parml.plot):
        names += [f"{module.__name__}.{n}" for n in module.__all__ if n != "logger"]
    return names


def main(html):
    missing = [n for n in public_names()
               if not os.path.exists(os.path.join(html, "generated", f"{n}.html"))]
    images = glob.glob(os.path.join(html, "_images", "sphx_glr_*.png"))
    examples = glob.glob(os.path.join(html, "auto_examples", "*.html"))
    problems = [f"no API page for {n}" for n in missing]
    if len(images) < 3:
        problems.append(f"expected gallery images, found {len(images)}")
    if len(examples) < 3:
        problems.append(f"expected gallery pages, found {len(examples)}")
    for problem in problems:
        print("docs:", problem)
    print(f"docs: {len(public_names()) - len(missing)} API pages, {len(examples)} gallery "
          f"pages, {len(images)} gallery images")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/_build/html"))
