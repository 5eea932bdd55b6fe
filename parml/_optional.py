"""Import optional dependencies with an error that names the extra to install."""

import importlib


def import_optional(module, *, extra, purpose):
    """Import ``module`` or raise an ImportError saying which extra installs it.

    Parameters
    ----------
    module : str
        Dotted module name, e.g. ``"tqdm.auto"``.
    extra : str
        The parml extra that brings the package, e.g. ``"progress"``.
    purpose : str
        What needed it, e.g. ``"progress=True"``; starts the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        raise ImportError(
            f"{purpose} needs the optional package {package!r}, which is not "
            f'installed. Install it with: pip install "parml[{extra}]"'
        ) from exc
