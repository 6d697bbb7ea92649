"""Network description: op specs, shape inference, LayerGraph, loading, saving and building."""

from .io import NetworkBuilder, builtin_networks, load_network, network_from_dict, network_to_dict, save_network
from .layer_graph import Layer, LayerGraph

__all__ = [
    "Layer", "LayerGraph", "NetworkBuilder", "builtin_networks", "load_network", "network_from_dict",
    "network_to_dict", "save_network",
]
