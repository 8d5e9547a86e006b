"""Sparse non-negative dictionary learning with two atoms: Vahadane's stain-matrix estimate.

Solves, on optical densities ``x_i`` (rows of ``X``, shape (n, 3)),

    min_{D, A}  sum_i 0.5 * ||x_i - D a_i||^2 + lambda1 * ||a_i||_1
    subject to  D >= 0, A >= 0, ||d_k||_2 <= 1 for both columns d_k of D (3, 2),

the problem of SPAMS ``trainDL(K=2, mode=2, modeD=0, posAlpha=True, posD=True)`` that
staintools calls, by batch alternating minimization on a fixed sample of pixels:

1. codes: for fixed ``D``, every ``a_i`` is an exact non-negative lasso solve, in closed form
   for two atoms (:class:`stainstyle.separation.ClosedFormLasso`);
2. dictionary: for fixed codes, one pass of block coordinate descent over the columns
   (Mairal et al. 2010, Algorithm 2, with the non-negativity of SPAMS' ``posD``):
   ``u = d_k + (B_k - D A_k) / A_kk`` with ``A = sum a a^T`` and ``B = sum x a^T``, then
   ``d_k = max(u, 0) / max(||max(u, 0)||, 1)``, the projection onto the constraint set.

Each step cannot increase the objective, so it decreases to a stationary point; iterations stop
when no dictionary entry moves by more than ``tol`` or after ``max_iter`` passes. SPAMS runs
the online variant of the same updates (mini-batches, for a time budget: staintools' default
is one second), so both reach the same kind of stationary point; on real tiles the two agree
within a degree per stain (``benchmarks/vahadane_parity.py``).

References
----------
Mairal, Bach, Ponce & Sapiro, "Online learning for matrix factorization and sparse coding",
JMLR 11:19-60, 2010.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stainstyle._sums import planar_cross_products
from stainstyle.separation import MIN_GRAM_DETERMINANT, ClosedFormLasso

#: Codes whose squared sum is below this leave their atom unused (the atom stays as it is).
_UNUSED_ATOM = 1e-12


@dataclass(frozen=True)
class Dictionary:
    """A learned two-atom dictionary.

    Attributes
    ----------
    atoms : ndarray of shape (3, 2), dtype float64
        Non-negative columns of norm at most 1, in the order of the initial dictionary.
    n_iter : int
        Alternating passes run.
    used : ndarray of shape (2,), dtype bool
        Whether some pixel has a non-zero code for each atom.
    """

    atoms: np.ndarray
    n_iter: int
    used: np.ndarray


def _parallel(atoms: np.ndarray) -> bool:
    """Whether the two columns are zero or (nearly) parallel: the lasso is not strictly convex."""
    gram = atoms.T @ atoms
    scale = gram[0, 0] * gram[1, 1]
    return bool(scale == 0 or np.linalg.det(gram) < MIN_GRAM_DETERMINANT * scale)


def sparse_codes(od: np.ndarray, atoms: np.ndarray, lambda1: float) -> np.ndarray:
    """Non-negative lasso codes ``(n, 2)`` of optical densities ``(n, 3)``, in float64.

    Parameters
    ----------
    od : ndarray of shape (n, 3), dtype float64
        Optical densities.
    atoms : ndarray of shape (3, 2)
        Dictionary, columns not parallel.
    lambda1 : float
        l1 penalty.

    Returns
    -------
    ndarray of shape (n, 2), dtype float64
    """
    return ClosedFormLasso.of(atoms, lambda1)(od)


def learn_dictionary(
    od: np.ndarray, init: np.ndarray, lambda1: float, max_iter: int, tol: float
) -> Dictionary:
    """Learn the two-atom sparse non-negative dictionary of optical densities.

    Parameters
    ----------
    od : ndarray of shape (n, 3), float
        Optical densities of tissue pixels (a sample of them), n >= 1.
    init : ndarray of shape (3, 2)
        Initial dictionary, non-negative columns that are not parallel.
    lambda1 : float
        l1 penalty of the codes (Vahadane: 0.1).
    max_iter : int
        Most alternating passes.
    tol : float
        Stop once no entry of the dictionary moves by more than this in a pass.

    Returns
    -------
    Dictionary
        The atoms in the order of ``init``. When a pass would make the columns parallel (one
        stain), the last dictionary before it is returned; the caller tests ``used`` and the
        angle between the atoms.
    """
    od = np.ascontiguousarray(od, dtype=np.float64)
    od_planes = np.ascontiguousarray(od.T)  # (3, n): contiguous sums, fixed order
    atoms = np.maximum(np.array(init, dtype=np.float64), 0.0)
    atoms /= np.maximum(np.linalg.norm(atoms, axis=0), 1.0)
    n_iter = 0
    used = np.ones(2, dtype=bool)
    while n_iter < max_iter:
        n_iter += 1
        codes = sparse_codes(od, atoms, lambda1)
        code_planes = np.ascontiguousarray(codes.T)
        gram = planar_cross_products(code_planes, code_planes)  # no dependence on threads
        cross = planar_cross_products(od_planes, code_planes)
        used = np.diag(gram) > _UNUSED_ATOM
        updated = _dictionary_pass(atoms, gram, cross, used)
        if _parallel(updated):
            break
        moved = np.abs(updated - atoms).max()
        atoms = updated
        if moved <= tol:
            break
    return Dictionary(atoms=atoms, n_iter=n_iter, used=used)


def _dictionary_pass(
    atoms: np.ndarray, gram: np.ndarray, cross: np.ndarray, used: np.ndarray
) -> np.ndarray:
    """One block-coordinate pass over the used columns, projected on ``d >= 0, ||d|| <= 1``."""
    updated = atoms.copy()
    for k in (0, 1):
        if used[k]:
            column = updated[:, k] + (cross[:, k] - updated @ gram[:, k]) / gram[k, k]
            np.maximum(column, 0.0, out=column)
            updated[:, k] = column / max(float(np.sqrt(column @ column)), 1.0)
    return updated
