"""Which modules the import recorder records: those whose real file lies outside the installed
prefixes, however the path to it is spelled (links to files, links to folders, links re-pointed)."""

from __future__ import annotations

import os
from pathlib import Path

from skipwise.project.recorder import _Finder


def finder_for(site: Path) -> _Finder:
    finder = _Finder()
    finder.prefixes = (os.path.realpath(site) + os.sep,)
    return finder


def test_a_file_in_an_installed_folder_is_installed_and_one_outside_is_not(tmp_path):
    site, project = tmp_path / "site", tmp_path / "project"
    (site / "pkg").mkdir(parents=True)
    project.mkdir()
    (site / "pkg" / "mod.py").write_text("x = 1\n")
    (project / "mine.py").write_text("x = 2\n")
    finder = finder_for(site)
    assert finder.installed(str(site / "pkg" / "mod.py"))
    assert not finder.installed(str(project / "mine.py"))
    assert not finder.installed(str(project / "missing.py"))


def test_a_link_from_an_installed_folder_to_project_code_is_project_code(tmp_path):
    site, project = tmp_path / "site", tmp_path / "project"
    (site / "pkg").mkdir(parents=True)
    project.mkdir()
    (project / "mine.py").write_text("x = 2\n")
    (site / "pkg" / "plain.py").write_text("x = 1\n")
    (site / "pkg" / "linked.py").symlink_to(project / "mine.py")
    (site / "linkedpkg").symlink_to(project, target_is_directory=True)
    finder = finder_for(site)
    assert finder.installed(str(site / "pkg" / "plain.py"))  # the folder's real path is now known
    assert not finder.installed(str(site / "pkg" / "linked.py"))  # a link in a known folder is followed
    assert not finder.installed(str(site / "linkedpkg" / "mine.py"))


def test_a_folder_link_re_pointed_between_imports_is_resolved_again(tmp_path):
    site, project, other = tmp_path / "site", tmp_path / "project", tmp_path / "site" / "real"
    other.mkdir(parents=True)
    project.mkdir()
    for folder in (other, project):
        (folder / "mod.py").write_text("x = 1\n")
    link = tmp_path / "via"
    link.symlink_to(other, target_is_directory=True)
    finder = finder_for(site)
    assert finder.installed(str(link / "mod.py"))
    link.unlink()
    link.symlink_to(project, target_is_directory=True)
    assert not finder.installed(str(link / "mod.py"))
    link.unlink()
    link.symlink_to(other, target_is_directory=True)
    assert finder.installed(str(link / "mod.py"))


def test_every_module_imported_here_is_judged_as_realpath_judges_it():
    import sys

    finder = _Finder()
    origins = [
        m.__spec__.origin
        for m in list(sys.modules.values())
        if getattr(m, "__spec__", None) is not None and isinstance(m.__spec__.origin, str)
    ]
    assert len(origins) > 100
    for origin in origins:
        assert finder.installed(origin) == os.path.realpath(origin).startswith(finder.prefixes), origin
