//! The one pattern for ventana's text enums (states, windows, reasons, tags, ...): a table
//! of variants and their text gives `ALL`, `as_str` and `parse`, so the two directions can
//! never disagree (`tests/tests/wire.rs` round-trips every one).

/// Gives a fieldless enum its text form from one table:
///
/// ```
/// #[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// pub enum Colour { Red, Green }
/// ventana_core::text_enum!(Colour { Red => "red", Green => "green" });
/// assert_eq!(Colour::parse(Colour::Green.as_str()), Some(Colour::Green));
/// assert_eq!(Colour::ALL, [Colour::Red, Colour::Green]);
/// ```
#[macro_export]
macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The text form (JSON, subjects, metrics, the command line).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            /// Reads the text form.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }
    };
}
