"""Folder datasets (text_dataset_from_directory semantics) and the seeded stratified splits."""

import numpy as np
import pytest

from helpers import make_text_folder
from rnnlab.data.folder import file_blocks, read_text_folder, stratified_split, stratified_subset


def test_classes_sorted_by_name_give_labels_and_subfolders_are_read(tmp_path):
    root = make_text_folder(tmp_path / "d", {"zebra": ["z1", "z2"], "apple": ["a1"], "mango": ["m1", "m2", "m3"]})
    (root / "mango" / "deeper").mkdir()
    (root / "mango" / "deeper" / "x.txt").write_text("m4")
    (root / "mango" / "notes.md").write_text("not a sample")
    (root / "stray.txt").write_text("not in a class folder")
    s = read_text_folder(root)
    assert s.class_names == ["apple", "mango", "zebra"]
    assert list(zip(s.texts, s.labels.tolist())) == [("a1", 0), ("m1", 1), ("m2", 1), ("m3", 1), ("m4", 1), ("z1", 2), ("z2", 2)]


def test_explicit_class_names_pick_and_order(tmp_path):
    root = make_text_folder(tmp_path / "d", {"a": ["x"], "b": ["y"], "c": ["z"]})
    s = read_text_folder(root, class_names=["c", "a"])
    assert s.texts == ["z", "x"] and s.labels.tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"class folders \['q'\] not found"):
        read_text_folder(root, class_names=["a", "q"])


def test_missing_folder_names_the_path_and_two_ways(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        read_text_folder(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(e.value)
    assert "root/<class>/*.txt" in str(e.value) and "RNNLAB_IMDB_ARCHIVE" in str(e.value)


def test_single_class_and_empty_class_are_rejected(tmp_path):
    one = make_text_folder(tmp_path / "one", {"pos": ["a", "b"]})
    with pytest.raises(ValueError, match=r"at least two class folders .*: expected >= 2, got 1"):
        read_text_folder(one)
    empty = make_text_folder(tmp_path / "empty", {"neg": ["a"], "pos": []})
    with pytest.raises(ValueError, match=r"pos holds no \.txt file"):
        read_text_folder(empty)


def test_stratified_split_keeps_proportions_is_seeded_and_disjoint():
    labels = np.array([0] * 70 + [1] * 30)
    keep, held = stratified_split(labels, 0.2, seed=1)
    assert len(held) == 20 and np.bincount(labels[held]).tolist() == [14, 6]
    assert np.array_equal(np.sort(np.concatenate([keep, held])), np.arange(100))
    assert np.array_equal(held, stratified_split(labels, 0.2, seed=1)[1])
    assert not np.array_equal(held, stratified_split(labels, 0.2, seed=2)[1])
    keep0, held0 = stratified_split(labels, 0.0, seed=1)
    assert len(held0) == 0 and len(keep0) == 100
    with pytest.raises(ValueError, match="validation fraction"):
        stratified_split(labels, 1.0, seed=0)


def test_stratified_subset_has_exact_size_and_both_classes():
    labels = np.array([0] * 11 + [1] * 9)
    sub = stratified_subset(labels, 5, seed=0)
    assert len(sub) == 5 and set(labels[sub]) == {0, 1}
    assert len(stratified_subset(labels, 100, seed=0)) == 20


def test_file_blocks_group_files_by_the_leading_number_of_their_name():
    paths = ["pos/0_9.txt", "pos/99_7.txt", "pos/100_8.txt", "neg/250_1.txt", "neg/review.txt"]
    assert file_blocks(paths, 100).tolist() == [0, 0, 1, 2, 4 // 100]  # no number: its position


def test_a_grouped_split_holds_out_whole_groups_per_class_with_the_exact_quota():
    labels = np.repeat([0, 1], 500)
    groups = np.concatenate([np.arange(500) // 10, np.arange(500) // 10])  # 50 groups of 10 per class
    keep, held = stratified_split(labels, 0.2, seed=3, groups=groups)
    assert len(held) == 200 and np.bincount(labels[held]).tolist() == [100, 100]
    assert np.intersect1d(keep, held).size == 0 and len(keep) + len(held) == 1000
    for c in (0, 1):  # each class: 10 whole groups of 10, none shared with training
        held_groups = set(groups[held][labels[held] == c])
        assert len(held_groups) == 10
        assert not held_groups & set(groups[keep][labels[keep] == c])
    assert np.array_equal(held, stratified_split(labels, 0.2, seed=3, groups=groups)[1])
    assert not np.array_equal(held, stratified_split(labels, 0.2, seed=4, groups=groups)[1])
    quota = stratified_split(labels, 0.205, seed=3, groups=groups)[1]  # 205: the last group cut to the quota
    assert len(quota) == 205
