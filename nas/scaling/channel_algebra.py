"""Channel sizes as algebra: atoms tied into groups that scale together, and sums of atoms.

An *atom* is a set of channels that appears whole somewhere in a graph: the output channels of a conv or a linear,
an axis of a parameter, the input image's channels, a chunk of a tensor. Atoms that must keep their proportion
(residual adds, depthwise convs, norms, gates, ...) are merged into a *channel group* (union-find); a group scales
as one: every member's new size is ``t * original size`` for one ``t`` of the group. A tensor axis's size is an
``Expr``, ``const + sum(coef * atom)``: a concatenation sums its inputs, a flatten multiplies by the flattened
sizes.

A group is *free* when it holds a conv or linear output and nothing pins it, *fixed* when something does (the
input channels, the outputs, an op the analysis does not understand: the reason is kept for the user), and
unchanged when it only holds parameter axes (they follow, they never lead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from .rounding import WIDTH_QUANTUM


class Kind(Enum):
    FREE = "free"
    FOLLOWER = "follower"
    FIXED = "fixed"


@dataclass(frozen=True)
class Expr:
    """``const + sum(coef * atom)`` channels; ``terms`` is sorted by atom and holds positive integer coefs."""

    const: int = 0
    terms: tuple[tuple[int, int], ...] = ()

    @staticmethod
    def atom(atom: int, coef: int = 1) -> Expr:
        return Expr(0, ((atom, coef),))

    @property
    def atoms(self) -> tuple[int, ...]:
        return tuple(atom for atom, _ in self.terms)

    @property
    def is_single(self) -> bool:
        return self.const == 0 and len(self.terms) == 1

    def __add__(self, other: Expr) -> Expr:
        coefs: dict[int, int] = dict(self.terms)
        for atom, coef in other.terms:
            coefs[atom] = coefs.get(atom, 0) + coef
        return Expr(self.const + other.const, tuple(sorted(coefs.items())))

    def times(self, multiplier: int) -> Expr:
        return Expr(self.const * multiplier, tuple((atom, coef * multiplier) for atom, coef in self.terms))


Axes = tuple[Expr | None, ...]  # one tensor's axes: an Expr where the size depends on channels
Value = Axes | list[Axes] | None  # what a graph node produces: one tensor, several, or none tracked


@dataclass
class ChannelAlgebra:
    """Union-find over atoms with proportional groups, divisibility requirements and fix reasons."""

    parent: list[int] = field(default_factory=list)
    original: list[int] = field(default_factory=list)
    kinds: list[Kind] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)
    divisors: list[int] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)  # root -> why the group is fixed

    def copy(self) -> ChannelAlgebra:
        """An independent copy (plans add requirements to a copy, so one analysis serves several plans)."""
        return ChannelAlgebra(
            list(self.parent),
            list(self.original),
            list(self.kinds),
            list(self.origins),
            list(self.divisors),
            dict(self.reasons),
        )

    # -- atoms and groups ----------------------------------------------------------------------------------
    def new_atom(self, size: int, kind: Kind, origin: str) -> int:
        self.parent.append(len(self.parent))
        self.original.append(int(size))
        self.kinds.append(kind)
        self.origins.append(origin)
        self.divisors.append(1)
        if kind is Kind.FIXED:
            self.reasons[len(self.parent) - 1] = origin
        return len(self.parent) - 1

    def find(self, atom: int) -> int:
        root = atom
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[atom] != root:  # path compression
            self.parent[atom], atom = root, self.parent[atom]
        return root

    def union(self, first: int, second: int) -> int:
        """Merge two atoms' groups: they scale by the same ``t``. Fixedness and its reason survive."""
        a, b = self.find(first), self.find(second)
        if a == b:
            return a
        self.parent[a] = b
        if a in self.reasons and b not in self.reasons:
            self.reasons[b] = self.reasons[a]
        self.reasons.pop(a, None)
        return b

    def fix(self, expr: Expr | None, reason: str) -> None:
        """Pin every group of ``expr``: those channels keep their size."""
        for atom in expr.atoms if expr is not None else ():
            root = self.find(atom)
            self.reasons.setdefault(root, reason)

    def is_fixed(self, atom: int) -> bool:
        return self.find(atom) in self.reasons

    def members(self) -> dict[int, list[int]]:
        groups: dict[int, list[int]] = {}
        for atom in range(len(self.parent)):
            groups.setdefault(self.find(atom), []).append(atom)
        return groups

    def scales(self, root: int, members: list[int]) -> bool:
        """A group scales when it is not fixed and holds a free atom."""
        return root not in self.reasons and any(self.kinds[m] is Kind.FREE for m in members)

    # -- expressions ---------------------------------------------------------------------------------------
    def size(self, expr: Expr, sizes: list[int] | None = None) -> int:
        values = sizes if sizes is not None else self.original
        return expr.const + sum(coef * values[atom] for atom, coef in expr.terms)

    def merge(self, expr: Expr) -> Expr:
        """Tie every atom of ``expr`` into one group (their proportions are kept)."""
        atoms = expr.atoms
        for atom in atoms[1:]:
            self.union(atoms[0], atom)
        return expr

    def unify(self, first: Expr, second: Expr, reason: str) -> Expr:
        """Two axes that must have the same size: tie their groups (or fix them when that cannot hold)."""
        if first == second:
            return first
        if self.size(first) != self.size(second):
            self.fix(first, reason)
            self.fix(second, reason)
            return first
        if first.is_single and second.is_single:
            self.union(first.atoms[0], second.atoms[0])
            return first
        merged = self.merge(first + second)  # one group: both sides scale by the same t ...
        if first.const != second.const:  # ... and are equal for every t only when the constants agree
            self.fix(merged, reason)
        return first

    def require(self, expr: Expr, divisor: int, reason: str) -> None:
        """``expr``'s new size must be divisible by ``divisor`` (each term is made divisible)."""
        if divisor <= 1:
            return
        if expr.const % divisor:
            self.fix(expr, reason)
            return
        for atom, coef in expr.terms:
            needed = divisor // math.gcd(divisor, coef)
            self.divisors[atom] = math.lcm(self.divisors[atom], needed)

    def part(self, expr: Expr, numerator: int, denominator: int, origin: str) -> Expr | None:
        """``expr * numerator / denominator`` as an expression: exact coefficients when they divide, else a new
        atom of that size tied to ``expr``'s group (a chunk, a split of channels over two axes). None (and
        ``expr`` fixed) when the size does not divide."""
        if expr.const * numerator % denominator == 0 and all(
            coef * numerator % denominator == 0 for _, coef in expr.terms
        ):
            return Expr(
                expr.const * numerator // denominator,
                tuple((atom, coef * numerator // denominator) for atom, coef in expr.terms),
            )
        size = self.size(expr) * numerator
        if size % denominator:
            self.fix(expr, f"{origin}: {self.size(expr)} channels do not split by {denominator}")
            return None
        merged = self.merge(expr)
        atom = self.new_atom(size // denominator, Kind.FOLLOWER, origin)
        if merged.terms:
            self.union(atom, merged.atoms[0])
        if expr.const:
            self.fix(merged, f"{origin}: channels mix a constant and a scaled part")
        return Expr.atom(atom)

    # -- solving -------------------------------------------------------------------------------------------
    def solve(self, width_factor: float, quantum: int = WIDTH_QUANTUM) -> tuple[list[int], list[str]]:
        """New size of every atom: each scaled group's root becomes ``max(M, round(w * size / M) * M)`` with
        ``M`` the smallest root size that makes every member a whole multiple of ``lcm(quantum, its divisor)``
        (pycls's ``round(w * width / 8) * 8`` for a lone atom). Returns (sizes, warnings)."""
        sizes = list(self.original)
        warnings: list[str] = []
        for root, members in self.members().items():
            if not self.scales(root, members):
                continue
            base = self.original[root]
            step = 1
            for member in members:
                need = math.lcm(quantum, self.divisors[member]) * base
                step = math.lcm(step, need // math.gcd(need, self.original[member]))
            new_root = max(step, round(base * width_factor / step) * step)
            for member in members:
                sizes[member] = new_root * self.original[member] // base
            if base >= quantum and abs(new_root / base / width_factor - 1) > 0.25:
                warnings.append(
                    f"width: channels of {self.origins[root]} scaled by {new_root / base:.2f} instead of "
                    f"{width_factor:.2f}: its group needs multiples of {step}"
                )
        return sizes, warnings
