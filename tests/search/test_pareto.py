from __future__ import annotations

import numpy as np
import pytest

from search.pareto import hypervolume, non_dominated


def test_non_dominated_with_mixed_directions() -> None:
    # accuracy (max), size (min)
    pts = np.array([[0.9, 100], [0.95, 200], [0.9, 150], [0.8, 50], [0.95, 200], [0.7, 60]])
    keep = non_dominated(pts, ["maximize", "minimize"])
    assert keep.tolist() == [True, True, False, True, True, False]


def test_hypervolume_2d_and_3d_known_values() -> None:
    pts = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert hypervolume(pts, [4.0, 4.0], ["minimize", "minimize"]) == pytest.approx(6.0)
    cube = np.array([[0.0, 0.0, 0.0]])
    assert hypervolume(cube, [1, 2, 3], ["minimize"] * 3) == pytest.approx(6.0)
    two = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    # union of two 1x2x1 and 2x1x1 boxes inside [0,2]^2 x [0,1]: 2 + 2 - 1
    assert hypervolume(two, [2, 2, 1], ["minimize"] * 3) == pytest.approx(3.0)
    # maximised objective: accuracy 0.9 above a reference of 0.5 -> 0.4 * (10 - 4)
    assert hypervolume(np.array([[0.9, 4.0]]), [0.5, 10.0], ["maximize", "minimize"]) == (
        pytest.approx(2.4)
    )
    assert hypervolume(np.array([[5.0, 5.0]]), [4.0, 4.0], ["minimize", "minimize"]) == 0.0
