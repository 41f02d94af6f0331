//! Wiring of the stages. [`offline`] is `osteon segment`: the worker without the network.
