"""Pure parsers, one per MTA: a line in, Events or an Unparsed reason out."""
