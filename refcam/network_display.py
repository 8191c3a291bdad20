"""How a network prints: MATLAB's layer table and connections, then refcam's aliases.

:meth:`refcam.network.Network.__str__` joins these; each takes plain data, so
it can be checked without building a network.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from .layers.base import Layer

INDEX_WIDTH = 6
COLUMN_GAP = "   "


def layer_table(layers: Sequence[Layer]) -> str:
    """The text MATLAB shows for a layer array::

          2x1 Layer array with layers:

             1   'input'   Image Input   28x28x1 images with 'zerocenter' normalization
             2   'relu'    ReLU          ReLU

    Index right-aligned in 6 columns, then quoted names, types and
    descriptions, columns separated by 3 spaces and padded to the widest entry.
    """
    names = [f"'{layer.name}'" for layer in layers]
    types = [type(layer).type for layer in layers]
    name_width = max(map(len, names))
    type_width = max(map(len, types))
    rows = [f"{index:>{INDEX_WIDTH}}{COLUMN_GAP}{name:<{name_width}}{COLUMN_GAP}"
            f"{kind:<{type_width}}{COLUMN_GAP}{layer.describe()}".rstrip()
            for index, (name, kind, layer) in enumerate(zip(names, types, layers), start=1)]
    return f"  {len(layers)}x1 Layer array with layers:\n\n" + "\n".join(rows)


def connection_table(connections: Sequence[tuple[str, str]]) -> str:
    """The edges as MATLAB's ``net.Connections`` table (Source, Destination)::

          3x2 Connections:

             Source     Destination
             'input'    'conv'
    """
    sources = ["Source"] + [f"'{source}'" for source, _ in connections]
    width = max(map(len, sources))
    rows = [f"{' ' * INDEX_WIDTH}{source:<{width}}{COLUMN_GAP}{destination}"
            for source, destination in zip(sources, ["Destination"] + [f"'{d}'" for _, d in connections])]
    return f"  {len(connections)}x2 Connections:\n\n" + "\n".join(rows)


def alias_table(aliases: Mapping[str, str]) -> str:
    """The aliases, one per line, after the layer table::

          1 alias:

             'layer1'   -> 'layer1.1.relu_1'
    """
    width = max(len(repr(alias)) for alias in aliases)
    rows = [f"{' ' * INDEX_WIDTH}{alias!r:<{width}}{COLUMN_GAP}-> {target!r}" for alias, target in aliases.items()]
    return f"  {len(aliases)} alias{'' if len(aliases) == 1 else 'es'}:\n\n" + "\n".join(rows)
