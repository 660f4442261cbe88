"""Small YAML configs, checked: configs/<step>.yaml (every key, commented, what users edit) <- the profile's
configs/<profile>/<step>.yaml <- command-line flags. Every layer is checked against the step's schema in
lib/schema.py: an unknown key (with the closest known one), a wrong type, a value out of range or a bad
combination stops the step with one line naming the file, line and key, the value and what is allowed.

    >>> cfg = load_config("select", "smoke", overrides={"num_reassign": 100})
    >>> cfg["num_reassign"]
    100
"""

import difflib
from pathlib import Path

import yaml

from lib.files import atomic_path
from lib.log import die
from lib.paths import CONFIGS


def _read_yaml(path):
    """({key: value}, {key: line number}) of a YAML mapping file; dies on bad YAML or a non-mapping."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        die(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})")
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        die(f"{path}: expected a mapping of key: value, got {type(data).__name__}")
    lines = (
        {k.value: k.start_mark.line + 1 for k, _ in node.value}
        if isinstance(node, yaml.MappingNode)
        else {}
    )
    return data, lines


def _unknown_key(step, key, known, where):
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(known))}"
    die(f"{where}: unknown key '{key}' for step '{step}' ({hint})")


def _allowed(error):
    """What a pydantic error says is allowed, in words."""
    ctx = error.get("ctx") or {}
    kinds = {
        "int_type": "an integer",
        "float_type": "a number",
        "bool_type": "true or false",
        "string_type": "a string",
        "list_type": "a list",
        "greater_than_equal": f"at least {ctx.get('ge')}",
        "greater_than": f"above {ctx.get('gt')}",
        "less_than_equal": f"at most {ctx.get('le')}",
        "less_than": f"below {ctx.get('lt')}",
        "literal_error": f"one of {ctx.get('expected')}",
        "string_too_short": "a non-empty string",
    }
    return kinds.get(error["type"], error["msg"])


def _validate(step, schema, config, origin):
    """The config checked by its schema (a dict again); dies on the first error, naming where the value came from."""
    from pydantic import ValidationError

    try:
        return schema(**config).model_dump()
    except ValidationError as e:
        error = e.errors()[0]
        loc = [p for p in error["loc"] if isinstance(p, str)]
        if not loc:  # a check across keys: name where the last-set key it involves came from
            keys = [
                k
                for k in origin
                if f"{k} " in error["msg"] or f"{k}," in error["msg"] or f"({k})" in error["msg"]
            ]
            where = origin[keys[-1]] if keys else f"configs/{step}.yaml"
            die(f"{where}: {error['msg'].removeprefix('Value error, ')}")
        key = loc[0]
        value = config.get(key)
        die(
            f"{origin.get(key, f'configs/{step}.yaml')}: key '{key}' must be {_allowed(error)}, got {value!r}"
        )


def _legacy_checked(key, value, default, where):
    """For a step without a schema: value if it has the base file's type (ints pass as floats; null takes anything)."""
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


def _layers(step, profile, configs_dir, overrides):
    """[(where, {key: value}, {key: line})] in the order they apply: base file, profile file, flags."""
    base_path = configs_dir / f"{step}.yaml"
    if not base_path.exists():
        die(f"{base_path}: config file missing (every step needs configs/{step}.yaml)")
    layers = [(str(base_path), *_read_yaml(base_path))]
    if profile != "default":
        if not (configs_dir / profile).is_dir():
            die(f"unknown profile '{profile}': no directory {configs_dir / profile}")
        profile_path = configs_dir / profile / f"{step}.yaml"
        if profile_path.exists():
            layers.append((str(profile_path), *_read_yaml(profile_path)))
    layers.append(
        ("command line", {k: v for k, v in (overrides or {}).items() if v is not None}, {})
    )
    return layers


def load_config(step, profile="default", configs_dir=None, overrides=None):
    """Resolve configs/<step>.yaml <- configs/<profile>/<step>.yaml <- overrides (None values are skipped)."""
    from lib.schema import STEPS

    layers = _layers(step, profile, Path(configs_dir or CONFIGS), overrides)
    schema = STEPS.get(step)
    known = list(schema.model_fields) if schema else list(layers[0][1])
    config, origin = {}, {}
    for where, layer, lines in layers:
        for key, value in sorted(layer.items(), key=lambda kv: lines.get(kv[0], 0)):
            at = f"{where}:{lines[key]}" if key in lines else where
            if key not in known:
                _unknown_key(step, key, known, at)
            if schema is None and key in config:
                value = _legacy_checked(key, value, config[key], at)
            config[key] = value
            origin.pop(key, None)
            origin[key] = at  # in the order keys were last set
        if schema is not None:  # each layer on its own, so an error names the layer that made it
            _validate(step, schema, config, origin)
    return _validate(step, schema, config, origin) if schema is not None else config


def check_config(step, config, where):
    """A whole config dict checked by the step's schema (for a config a step derives, e.g. with overrides);
    an error names `where`."""
    from lib.schema import STEPS

    for key in config:
        if key not in STEPS[step].model_fields:
            _unknown_key(step, key, list(STEPS[step].model_fields), where)
    return _validate(step, STEPS[step], config, {k: where for k in config})


def _flag_kwargs(annotation):
    """argparse keywords for a schema field's type: int, float, str, bool, Optional, Literal and lists of them."""
    import argparse
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    kinds = [a for a in args if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and len(kinds) == 1:  # Optional[X]
        return _flag_kwargs(kinds[0])
    if origin in (typing.Union, types.UnionType):  # int | str: a number when it reads as one
        return {"type": lambda text: int(text) if text.lstrip("-").isdigit() else text}
    if origin is list:
        return {**_flag_kwargs(args[0]), "nargs": "*"}
    if origin is typing.Literal:
        return {"choices": list(args), "type": type(args[0])}
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    return {"type": annotation}


def add_step_flags(parser, step, skip=()):
    """A --flag for every key of the step's schema (help from the schema), plus --artifacts/--profile/--configs.

    >>> p = argparse.ArgumentParser(); add_step_flags(p, "analyze"); p.parse_args(["--workers", "2"]).workers
    2
    """
    from lib.paths import DEFAULT_ARTIFACTS
    from lib.schema import STEPS

    group = parser.add_argument_group(
        f"configs/{step}.yaml keys (override the file and the profile)"
    )
    import typing

    for key, field in STEPS[step].model_fields.items():
        if (
            key not in skip and typing.get_origin(field.annotation) is not dict
        ):  # mappings stay in the YAML
            group.add_argument(
                "--" + key.replace("_", "-"),
                dest=key,
                default=None,
                help=field.description,
                **_flag_kwargs(field.annotation),
            )
    parser.add_argument(
        "--artifacts", default=str(DEFAULT_ARTIFACTS), help="artifacts root (Make: ARTIFACTS=)"
    )
    parser.add_argument("--profile", default="default", help="config profile (Make: PROFILE=)")
    parser.add_argument("--configs", default=None, help="configs directory (default: configs/)")
    return parser


def parse_step_args(step, doc, extra=(), argv=None):
    """The command line of a step script: its docstring as --help, the flags of add_step_flags, and the
    script's own flags, each (flag, argparse keywords) in `extra`, listed before the config keys.

        >>> args = parse_step_args("corpus", __doc__, [("--raw-dir", {"help": "your corpus files"})])
    """
    import argparse

    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for flag, kwargs in extra:
        parser.add_argument(flag, **kwargs)
    add_step_flags(parser, step)
    return parser.parse_args(argv)


def step_config(step, args):
    """load_config for a step, with the flags that add_step_flags made as the last layer."""
    from lib.schema import STEPS

    overrides = {key: getattr(args, key, None) for key in STEPS[step].model_fields}
    return load_config(step, args.profile, args.configs, overrides)


def save_config(config, path, step, profile):
    """Save the resolved config beside an artifact, so every output says how it was made."""
    header = f"# Resolved config of step '{step}', profile '{profile}'. Written by the step; do not edit.\n"
    with atomic_path(path) as tmp:
        tmp.write_text(
            header + yaml.safe_dump(config, sort_keys=True, allow_unicode=True), encoding="utf-8"
        )
