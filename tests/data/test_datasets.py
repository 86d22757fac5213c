import os
import pathlib
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds

from kerastrain.data import class_counts, load


class KerastrainTinyPairs(tfds.core.GeneratorBasedBuilder):
    """Six (x, label) pairs in `train` and four in `test`: a TFDS data set
    prepared offline, read through TFDS's real reader (its mock data skips
    it)."""

    VERSION = tfds.core.Version("1.0.0")
    # No source file to find checksums beside: TFDS's search for it, in a
    # test module, needed the `importlib_resources` package.
    code_path = None

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, supervised_keys=("x", "label"),
            features=tfds.features.FeaturesDict({
                "x": tfds.features.Tensor(shape=(2,), dtype=np.float32),
                "label": tfds.features.ClassLabel(num_classes=2)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(6),
                "test": self._generate_examples(4)}

    def _generate_examples(self, n):
        for i in range(n):
            yield i, {"x": np.full(2, i, np.float32), "label": i % 2}


@pytest.fixture(scope="module")
def tiny_pairs_dir(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("tfds"))
    KerastrainTinyPairs(data_dir=folder).download_and_prepare()
    return folder


@pytest.fixture
def no_download(monkeypatch):
    """Makes any TFDS download or preparation fail loudly (these tests
    must be refused before one)."""
    def download_and_prepare(self, *args, **kwargs):
        raise RuntimeError(f"TFDS started preparing {self.name}")
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                        download_and_prepare)


@pytest.mark.parametrize("name, shape, classes", [
    ("digits", (1797, 8, 8, 1), 10),
    ("breast_cancer", (569, 30), 2),
    ("wine", (178, 13), 3),
    ("diabetes_risk", (442, 10), 2),
])
def test_offline_data_sets(name, shape, classes):
    x, y = load(name)
    assert x.shape == shape and x.dtype == np.float32
    assert len(np.unique(y)) == classes


def test_diabetes_risk_is_the_documented_imbalanced_label():
    from sklearn.datasets import load_diabetes

    _, progression = load_diabetes(return_X_y=True)
    _, y = load("diabetes_risk")
    np.testing.assert_array_equal(y, progression > 250)
    assert class_counts(y) == {0: 377, 1: 65}


def test_tfds_data_sets_load_through_tfds_with_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=12):
        x, y = load("tfds:mnist", split="train", data_dir=str(tmp_path))
    assert x.shape == (12, 28, 28, 1) and y.shape == (12,)
    assert set(np.unique(y).tolist()) <= set(range(10))


def test_a_tfds_split_without_examples_is_named(tmp_path):
    # NumPy's "need at least one array to concatenate" named nothing.
    with tfds.testing.mock_data(num_examples=0):
        with pytest.raises(ValueError, match=r"`split` must select "
                           r"examples of TFDS data set 'mnist'.*"
                           r"split='train\[:0\]'"):
            load("tfds:mnist", split="train[:0]", data_dir=str(tmp_path))


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match=r"'breast_cancer', 'diabetes_risk'"):
        load("cifar10")
    with pytest.raises(ValueError, match="tfds"):
        load("tfds:")
    with pytest.raises(TypeError, match="name"):
        load(3)


def test_splits_are_one_string_and_only_for_tfds(tmp_path):
    with pytest.raises(ValueError, match=r"'wine' comes whole.*split='test'"):
        load("wine", split="test")
    with pytest.raises(TypeError, match=r"one TFDS split.*\['train', 'test'"):
        load("tfds:mnist", split=["train", "test"], data_dir=str(tmp_path))


def test_an_offline_data_set_refuses_a_folder_it_would_ignore(tmp_path):
    folder = re.escape(repr(str(tmp_path)))
    with pytest.raises(ValueError,
                       match=rf"'digits' ships inside.*data_dir={folder}"):
        load("digits", data_dir=str(tmp_path))


def test_a_missing_tfds_data_set_without_download_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load("tfds:mnist", data_dir=str(tmp_path), download=False)


@pytest.mark.parametrize("download", ["no", "False", 0, None])
def test_download_must_be_a_bool(tmp_path, download):
    # TFDS took any truthy value, "no" too, as leave to download.
    with pytest.raises(TypeError, match=r"`download` must be True or False"):
        load("tfds:mnist", data_dir=str(tmp_path), download=download)
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("damage, match", [
    ("no splits", "not prepared, or not completely"),
    ("bad description", "is damaged.*ParseError"),
    ("no records", "is not complete: its files do not read.*NotFoundError"),
])
def test_a_partial_tfds_copy_is_a_clear_error(tmp_path, damage, match):
    """What a preparation stopped half-way leaves: the description of the
    data set without its prepared splits, or a description cut short."""
    import os

    folder = tfds.builder("mnist", data_dir=str(tmp_path)).data_dir
    os.makedirs(folder)
    if damage == "no splits":
        tfds.builder("mnist").info.write_to_directory(folder)
    elif damage == "no records":  # the splits described, their files gone
        info = tfds.builder("mnist", data_dir=str(tmp_path)).info
        info.set_splits(tfds.core.SplitDict([tfds.core.SplitInfo(
            name="train", shard_lengths=[60000], num_bytes=100,
            filename_template=tfds.core.ShardedFileTemplate(
                data_dir=folder, dataset_name="mnist", split="train",
                template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
                filetype_suffix="tfrecord"))]))
        info.write_to_directory(folder)
    else:
        with open(os.path.join(folder, "dataset_info.json"), "w") as f:
            f.write('{"name": "mni')
    with pytest.raises(FileNotFoundError, match=match) as error:
        load("tfds:mnist", data_dir=str(tmp_path), download=False)
    assert str(tmp_path) in str(error.value)


@pytest.mark.parametrize("name, said", [
    ("mnist:9.9.9", "cannot be loaded at version 9.9.9, only: 3"),
    ("cifar10_corrupted/no_such_config", "BuilderConfig no_such_config "
     "not found"),
])
def test_a_version_or_config_tfds_lacks_names_the_name(tmp_path, name,
                                                       said):
    # It was called a damaged copy (a FileNotFoundError) with none there.
    with pytest.raises(ValueError, match=rf"Argument `name`.*"
                       rf"'tfds:{name}' builds in no folder.*{said}"):
        load(f"tfds:{name}", data_dir=str(tmp_path), download=False)
    assert not os.listdir(tmp_path)


def test_a_tfds_data_set_of_varying_image_sizes_is_refused(tmp_path):
    # tf_flowers' images differ in size; the mock draws them so too.
    with tfds.testing.mock_data(num_examples=6):
        with pytest.raises(ValueError,
                           match=r"'tf_flowers'.*varying shape.*resize"):
            load("tfds:tf_flowers", data_dir=str(tmp_path))


@pytest.mark.parametrize("name", ["celeb_a", "coco_captions"])
def test_a_tfds_data_set_without_pairs_is_refused_before_download(
        tmp_path, no_download, name):
    # They declare no supervised keys: TFDS began the whole download, and
    # only `as_supervised=True` failed then.
    with pytest.raises(ValueError, match=rf"Argument `name`.*supervised "
                       rf"\(input, label\) pairs.*name='tfds:{name}'"):
        load(f"tfds:{name}", data_dir=str(tmp_path))


@pytest.mark.parametrize("data_dir, error, match", [
    ("afile", ValueError, r"/afile' is not a folder.*data_dir='afile'"),
    ("afile/sub", ValueError,
     r"/afile' is not a folder.*data_dir='afile/sub'"),
    ("", ValueError, r"`data_dir` must be a folder.*data_dir=''"),
    (5, TypeError, r"`data_dir` must be a non-empty path.*data_dir=5"),
])
@pytest.mark.parametrize("download", [True, False])
def test_a_tfds_data_dir_that_is_no_folder_is_refused_first(
        tmp_path, monkeypatch, no_download, data_dir, error, match,
        download):
    # A file failed half-way through preparing (NotADirectoryError) or
    # was "not prepared"; "" prepared into the current folder; 5 was a
    # "damaged" copy.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(error, match=match):
        load("tfds:mnist", data_dir=data_dir, download=download)
    assert os.listdir(tmp_path) == ["afile"]


def test_a_tfds_data_dir_yet_to_be_made_is_a_folder_to_make(tmp_path):
    new = tmp_path / "new" / "folder"
    with pytest.raises(FileNotFoundError, match="not prepared"):
        load("tfds:mnist", data_dir=new, download=False)


def test_an_empty_split_of_a_prepared_tfds_data_set_is_named(
        tiny_pairs_dir):
    # TFDS's reader said "Instruction [] corresponds to no data!".
    x, y = load("tfds:kerastrain_tiny_pairs", split="train[:2]",
                data_dir=pathlib.Path(tiny_pairs_dir), download=False)
    assert x.shape == (2, 2) and y.shape == (2,)
    with pytest.raises(ValueError, match=r"Argument `split` must select "
                       r"examples of TFDS data set 'kerastrain_tiny_pairs'"
                       r".*split='train\[:0\]'"):
        load("tfds:kerastrain_tiny_pairs", split="train[:0]",
             data_dir=tiny_pairs_dir, download=False)
