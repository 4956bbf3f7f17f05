"""DetectorConfig.from_yaml on hostile or broken input: every problem is a ConfigError naming the file (and
the line and column where YAML reports one), never a yaml / OS / Python exception, and never slow."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import pytest

from extract.checkpoints import read_checkpoint
from extract.model import ConfigError, DetectorConfig
from extract.model.config_yaml import MAX_BASE_DEPTH, MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH

# Error messages quote at most ~200 characters of any value; with the file name and the explanation a
# message stays well under this.
SHORT_MESSAGE = 600


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def config_error(source) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        DetectorConfig.from_yaml(source)
    return raised.value


@pytest.mark.parametrize(
    "text, line, column, words",
    [
        ("MODEL:\n  RESNETS: [1, 2\n", 3, 1, "while parsing a flow sequence at line 2, column 12"),
        ("MODEL:\n\tRESNETS: 1\n", 2, 1, "cannot start any token"),
        ("MODEL: {DEPTH: 1\n", 2, 1, "flow mapping"),
        ("MODEL: 1\n---\nMODEL: 2\n", 2, 1, "expected a single document"),
        ("MODEL: *nowhere\n", 1, 8, "undefined alias"),
        ("MODEL: !custom 1\n", 1, 8, "could not determine a constructor for the tag '!custom'"),
        ("? [1, 2]\n: 3\n", 1, 3, "unhashable key"),
    ],
)
def test_invalid_yaml_names_the_file_line_and_column(tmp_path, text, line, column, words):
    path = write(tmp_path / "config.yaml", text)
    message = str(config_error(path))
    assert message.startswith(f"{path}: invalid YAML at line {line}, column {column}"), message
    assert words in message
    # YAML text (not a file) is named as such, with the same position.
    assert str(config_error(text)).startswith(f"YAML text: invalid YAML at line {line}, column {column}")


@pytest.mark.parametrize(
    ("text", "words"),
    [("SEED: 2001-13-45\n", "month must be in 1..12"), ("SEED: " + "9" * 5000 + "\n", "5000 digits")],
)
def test_values_pyyaml_cannot_build_name_the_file(tmp_path, text, words):
    # PyYAML raised a bare ValueError for these (a timestamp that is no date, an int too long to convert).
    path = write(tmp_path / "config.yaml", text)
    message = str(config_error(path))
    assert message.startswith(f"{path}: a YAML value cannot be read: ") and words in message


def test_a_control_character_is_reported_with_its_line(tmp_path):
    path = write(tmp_path / "config.yaml", "MODEL:\n  X: a\x07b\n")
    message = str(config_error(path))
    assert message.startswith(f"{path}: invalid YAML at line 2") and "#x0007" in message


@pytest.mark.parametrize(
    "tag", ["!!python/object/apply:pathlib.Path.touch", "!!python/object/new:pathlib.Path", "!!python/name:os.system"]
)
def test_python_tags_are_refused_and_nothing_is_built(tmp_path, tag):
    marker = tmp_path / "touched"
    path = write(tmp_path / "config.yaml", f"MODEL:\n  WEIGHTS: {tag} ['{marker}']\n")
    message = str(config_error(path))
    assert message.startswith(f"{path} at line 2, column 12: the YAML tag {tag.split(' ')[0]} is not allowed")
    assert "Python objects are never built" in message
    assert not marker.exists()


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("42\n", "int"), ("just words\n", "str")])
def test_a_top_level_that_is_not_a_mapping_names_the_file(tmp_path, text, kind):
    path = write(tmp_path / "config.yaml", text)
    assert str(config_error(path)) == (
        f"{path} is not a YAML mapping of detectron2 keys (its top level is of type {kind})"
    )


def test_a_one_line_string_that_names_no_file_says_so():
    message = str(config_error("configs/missing.yaml"))
    assert "YAML text 'configs/missing.yaml' (no file of that name exists)" in message
    assert "not a YAML mapping" in message


def test_a_path_too_long_for_the_os_is_yaml_text_not_a_crash():
    # Path.is_file raised OSError(ENAMETOOLONG) here.
    message = str(config_error("x" * 5000))
    assert "not a YAML mapping" in message and len(message) < SHORT_MESSAGE


def test_missing_directory_and_unreadable_files_name_the_file(tmp_path):
    missing = tmp_path / "missing.yaml"
    assert str(config_error(missing)) == f"config file {missing} does not exist"
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    for source in (folder, str(folder)):
        assert str(config_error(source)) == f"config file {folder} is a directory, not a YAML file"
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    for source in (loop, str(loop)):
        assert str(config_error(source)).startswith(f"cannot read config file {loop}: symlink loop")
    dangling = tmp_path / "dangling.yaml"
    dangling.symlink_to(tmp_path / "gone.yaml")
    assert str(config_error(str(dangling))) == f"config file {dangling} does not exist (a symlink to a missing file)"
    below_a_file = write(tmp_path / "plain.yaml", "MODEL: {}\n") / "config.yaml"
    assert str(config_error(below_a_file)) == f"cannot read config file {below_a_file}: Not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_a_file_without_read_permission_names_the_os_error(tmp_path):
    path = write(tmp_path / "config.yaml", "MODEL: {}\n")
    path.chmod(0)
    assert str(config_error(path)) == f"cannot read config file {path}: Permission denied"


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    assert str(config_error(fifo)) == f"config file {fifo} is not a regular file"


def test_non_utf8_bytes_name_the_file_and_line(tmp_path):
    path = write(tmp_path / "config.yaml", b"MODEL:\n  WEIGHTS: caf\xe9.pkl\n")
    assert str(config_error(path)).startswith(f"config file {path} is not UTF-8 text: byte 0xe9 at line 2, column 15")


def test_a_file_over_the_size_limit_is_refused_before_parsing(tmp_path):
    path = write(tmp_path / "config.yaml", b"MODEL: {}\n" + b"#" * MAX_CONFIG_BYTES)
    message = str(config_error(path))
    assert message.startswith(f"config file {path} is larger than {MAX_CONFIG_BYTES} bytes")
    assert "few KB" in message
    assert "characters, more than a detector config may have" in str(config_error("#\n" * MAX_CONFIG_BYTES))


def billion_laughs(levels: int, *, mappings: bool) -> str:
    """Each level holds nine aliases of the one before: 9 ** levels values from a few hundred bytes."""
    if mappings:
        lines = ["l0: &l0 {a: lol, b: lol, c: lol, d: lol, e: lol, f: lol, g: lol, h: lol, i: lol}"]
        lines += [f"l{i}: &l{i} {{" + ", ".join(f"{k}: *l{i - 1}" for k in "abcdefghi") + "}" for i in range(1, levels)]
        return "\n".join(lines) + f"\nMODEL:\n  ROI_HEADS: *l{levels - 1}\n"
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nMODEL:\n  PIXEL_MEAN: *l{levels - 1}\n"


@pytest.mark.parametrize("mappings", [False, True], ids=["lists", "mappings"])
def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path, mappings):
    # Before: a 7-level bomb of lists printed its ~35 MB expansion in the error message, one of mappings
    # was walked key by key (9 ** 7 keys: minutes, gigabytes).
    path = write(tmp_path / "config.yaml", billion_laughs(7, mappings=mappings))
    message = str(config_error(path))
    assert message.startswith(f"{path} at line ")
    assert "once aliases are expanded" in message and "alias bomb" in message
    assert len(message) < SHORT_MESSAGE


def test_aliases_within_the_limits_still_work(tmp_path):
    cfg = DetectorConfig.from_yaml(
        "MODEL:\n  RPN:\n    BBOX_REG_WEIGHTS: &ones [1.0, 1.0, 1.0, 1.0]\n  PIXEL_STD: [1.0, 1.0, 1.0]\n"
        "  ROI_BOX_HEAD:\n    BBOX_REG_WEIGHTS: *ones\n"
    )
    assert cfg.box_reg_weights == cfg.rpn_bbox_reg_weights == (1.0, 1.0, 1.0, 1.0)


def test_a_recursive_alias_is_refused(tmp_path):
    # Before: PyYAML built a dict that contains itself, and flattening it hit RecursionError.
    path = write(tmp_path / "config.yaml", "MODEL: &self\n  RESNETS: *self\n")
    assert str(config_error(path)) == (
        f"{path} at line 2, column 12: alias *self refers to a list / mapping that contains it (a recursive value)"
    )


def test_deep_nesting_is_refused(tmp_path):
    # Before: a few thousand brackets raised RecursionError (or a YAML error with a 4 KB quote).
    depth = MAX_CONFIG_DEPTH + 1
    path = write(tmp_path / "config.yaml", "MODEL: " + "[" * depth + "]" * depth + "\n")
    message = str(config_error(path))
    assert message.startswith(f"{path} at line 1, column ") and f"nested more than {MAX_CONFIG_DEPTH} deep" in message
    message = str(config_error("A: " + "[" * 5000 + "]" * 5000 + "\n"))
    assert message.startswith("YAML text") and len(message) < SHORT_MESSAGE


def test_a_key_spelled_twice_is_refused_not_silently_dropped(tmp_path):
    # Before: YAML kept the second MODEL section and the first one's settings vanished without a word.
    path = write(tmp_path / "config.yaml", "MODEL:\n  RESNETS:\n    DEPTH: 50\nINPUT: {}\nMODEL:\n  MASK_ON: false\n")
    assert str(config_error(path)) == (
        f"{path} at line 5, column 1: key 'MODEL' appears twice in one mapping (also on line 1); "
        "YAML would silently keep only the last one"
    )
    # Merge keys may repeat, and a merged key may be overridden.
    cfg = DetectorConfig.from_yaml(
        "SOLVER:\n  A: &base {NUM_CLASSES: 5, SCORE_THRESH_TEST: 0.1}\n  B: &more {NMS_THRESH_TEST: 0.4}\n"
        "MODEL:\n  ROI_HEADS:\n    <<: *base\n    <<: *more\n    NUM_CLASSES: 7\n"
    )
    assert (cfg.num_classes, cfg.score_thresh_test, cfg.nms_thresh_test) == (7, 0.1, 0.4)


def test_key_and_value_errors_name_the_file(tmp_path):
    # Before, only YAML text errors were possible here and a file's key errors did not say which file.
    path = write(tmp_path / "config.yaml", "MODEL:\n  RESNETS:\n    DEPHT: 50\n")
    assert str(config_error(path)).startswith(f"{path}: unknown config key MODEL.RESNETS.DEPHT: ")
    write(path, "MODEL:\n  RESNETS:\n    DEPTH: 34\n")
    error = config_error(str(path))
    assert str(error).startswith(f"{path}: DetectorConfig.resnet_depth (MODEL.RESNETS.DEPTH) = 34: expected one of")
    assert error.key == "MODEL.RESNETS.DEPTH"


def test_base_problems_name_both_files(tmp_path):
    child = write(tmp_path / "child.yaml", "_BASE_: folder.yaml\n")
    (tmp_path / "folder.yaml").mkdir()
    assert str(config_error(child)) == (
        f"_BASE_ file {tmp_path / 'folder.yaml'} (named in {child}) is a directory, not a YAML file"
    )
    write(child, "_BASE_: loop.yaml\n")
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")
    assert str(config_error(child)).startswith(
        f"cannot read _BASE_ file {tmp_path / 'loop.yaml'} (named in {child}): symlink loop"
    )
    write(child, "_BASE_: [a.yaml, b.yaml]\n")
    assert str(config_error(child)) == f"{child}: _BASE_: ['a.yaml', 'b.yaml'] is not a file name"
    write(child, "_BASE_: broken.yaml\n")
    write(tmp_path / "broken.yaml", "MODEL: [\n")
    assert str(config_error(child)).startswith(f"{tmp_path / 'broken.yaml'}: invalid YAML at line 2, column 1")
    # A Base-RCNN-C4.yaml that exists but is not a file is an error, not skipped like a missing one.
    write(child, "_BASE_: Base-RCNN-C4.yaml\n")
    (tmp_path / "Base-RCNN-C4.yaml").mkdir()
    assert "Base-RCNN-C4.yaml" in str(config_error(child)) and "is a directory" in str(config_error(child))


def test_a_base_chain_longer_than_the_limit_is_refused(tmp_path):
    for i in range(MAX_BASE_DEPTH + 2):
        write(tmp_path / f"c{i}.yaml", f"_BASE_: c{i + 1}.yaml\n")
    write(tmp_path / f"c{MAX_BASE_DEPTH + 2}.yaml", "MODEL: {}\n")
    message = str(config_error(tmp_path / "c0.yaml"))
    assert f"its _BASE_ chain is longer than {MAX_BASE_DEPTH} files" in message
    # A chain within the limit loads.
    write(tmp_path / "c3.yaml", "MODEL:\n  ROI_HEADS:\n    NUM_CLASSES: 3\n")
    assert DetectorConfig.from_yaml(tmp_path / "c0.yaml").num_classes == 3


@pytest.mark.parametrize(
    "text, key",
    [
        # Each raised something other than ConfigError before: TypeError, OverflowError, TypeError.
        ("MODEL:\n  ROI_HEADS:\n    NAME: '{[1]: 2}'\n", "MODEL.ROI_HEADS.NAME"),
        ("MODEL:\n  RESNETS:\n    DEPTH: .inf\n", "MODEL.RESNETS.DEPTH"),
        ("MODEL:\n  RPN:\n    CONV_DIMS: [wide]\n", "MODEL.RPN.CONV_DIMS"),
        ("MODEL:\n  RESNETS:\n    DEPTH: '" + "-" * 5000 + "1'\n", "MODEL.RESNETS.DEPTH"),
    ],
)
def test_odd_values_are_config_errors_naming_the_key(text, key):
    error = config_error(text)
    assert str(error).startswith(f"{key}: ") and error.key == key
    assert len(str(error)) < SHORT_MESSAGE


def test_messages_quote_at_most_a_few_hundred_characters():
    long_list = "[" + ", ".join(["1.0"] * 20_000) + "]"
    message = str(config_error(f"MODEL:\n  PIXEL_MEAN: {long_list}\n"))
    assert message.startswith("MODEL.PIXEL_MEAN: [1.0, 1.0") and len(message) < SHORT_MESSAGE
    long_key = "K" * 10_000
    message = str(config_error(f"MODEL:\n  ? {long_key}\n  : 1\n"))  # an explicit key: no 1024-character limit
    assert message.startswith("unknown config key MODEL.KKKK") and "(10006 characters)" in message
    assert len(message) < SHORT_MESSAGE


def test_unknown_port_keys_are_listed_briefly():
    text = "roi_heads:\n  num_classes: 9\n" + "".join(f"extra_{i}: 1\n" for i in range(500))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert DetectorConfig.from_yaml(text).num_classes == 9
    (message,) = [str(w.message) for w in caught]
    assert "extra_0, extra_1" in message and "and 480 more" in message and len(message) < SHORT_MESSAGE


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("anchor_sizes", (), "a non-empty list of sizes > 0"),
        ("anchor_aspect_ratios", (0.5, -1.0), "a non-empty list of ratios > 0"),
        ("anchor_offset", 1.0, "in [0, 1)"),
        ("score_thresh_test", 1.5, "in [0, 1]"),
        ("nms_thresh_test", -0.1, "in [0, 1]"),
        ("rpn_nms_thresh", 2.0, "in [0, 1]"),
        ("rpn_post_nms_topk_test", 0, "> 0"),
        ("detections_per_image", 0, "> 0"),
        ("stem_out_channels", 0, "> 0"),
        ("rpn_min_size", -1.0, ">= 0"),
    ],
)
def test_values_the_network_cannot_use_are_refused(field, value, expected):
    with pytest.raises(ConfigError, match=rf"DetectorConfig\.{field} .*: expected {re.escape(expected)}$"):
        DetectorConfig(**{field: value})


def test_from_dict_and_from_yaml_refuse_the_wrong_type():
    with pytest.raises(ConfigError, match="a detector config is a mapping of detectron2 keys, not a list"):
        DetectorConfig.from_dict(["MODEL"])
    with pytest.raises(TypeError, match="takes a path or YAML text, got bytes"):
        DetectorConfig.from_yaml(b"MODEL: {}\n")


def test_a_detector_folder_with_a_broken_config_is_a_config_error(tmp_path):
    # What lxmert-extract and the pipelines load: the error names the folder's config.yaml.
    write(tmp_path / "model.safetensors", b"")
    write(tmp_path / "config.yaml", "MODEL:\n  RESNETS: [1, 2\n")
    with pytest.raises(ConfigError, match=f"{tmp_path / 'config.yaml'}: invalid YAML at line 3, column 1"):
        read_checkpoint(tmp_path)
    write(tmp_path / "config.yaml", "MODEL: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="the YAML tag !!python/object/apply:os.system is not allowed"):
        read_checkpoint(tmp_path)
