"""Small YAML configs: configs/<step>.yaml holds every key with its default and a comment;
configs/<profile>/<step>.yaml overrides some; command-line flags override both.
Unknown keys and wrong types are errors that name the file and the key."""

from pathlib import Path

import yaml

from lib.files import atomic_path
from lib.log import die
from lib.paths import CONFIGS


def _read_yaml(path):
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        die(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})")
    if data is None:
        return {}
    if not isinstance(data, dict):
        die(f"{path}: expected a mapping of key: value, got {type(data).__name__}")
    return data


def _checked(key, value, default, where):
    """Return value if it has the default's type (ints pass as floats; a null default takes anything)."""
    if default is None or value is None:
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float))
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        die(f"{where}: key '{key}' must be {type(default).__name__}, got {value!r}")
    return value


def load_config(step, profile="default", configs_dir=None, overrides=None):
    """Resolve configs/<step>.yaml <- configs/<profile>/<step>.yaml <- overrides (None values are skipped)."""
    configs_dir = Path(configs_dir or CONFIGS)
    base_path = configs_dir / f"{step}.yaml"
    if not base_path.exists():
        die(f"{base_path}: config file missing (every step needs configs/{step}.yaml)")
    config = _read_yaml(base_path)
    layers = []
    if profile != "default":
        if not (configs_dir / profile).is_dir():
            die(f"unknown profile '{profile}': no directory {configs_dir / profile}")
        profile_path = configs_dir / profile / f"{step}.yaml"
        if profile_path.exists():
            layers.append((str(profile_path), _read_yaml(profile_path)))
    layers.append(("command line", {k: v for k, v in (overrides or {}).items() if v is not None}))
    for where, layer in layers:
        for key, value in layer.items():
            if key not in config:
                known = ", ".join(sorted(config))
                die(f"{where}: unknown key '{key}' for step '{step}' (known keys: {known})")
            config[key] = _checked(key, value, config[key], where)
    return config


def save_config(config, path, step, profile):
    """Save the resolved config beside an artifact, so every output says how it was made."""
    header = f"# Resolved config of step '{step}', profile '{profile}'. Written by the step; do not edit.\n"
    with atomic_path(path) as tmp:
        tmp.write_text(header + yaml.safe_dump(config, sort_keys=True, allow_unicode=True), encoding="utf-8")
