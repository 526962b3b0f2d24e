"""The simulator's phrase banks: categories of a trust company's help desk (subjects, details,
resolutions), the slots their templates fill, and the greetings, closings, agents, fillers and
accents that make a ticket look typed by a person (core/data/simulate.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    """Phrase banks for one category; ``{x}`` slots are filled from ``SLOTS``."""

    label: str
    subjects: tuple[str, ...]
    details: tuple[str, ...]
    resolutions: tuple[str, ...]


SLOTS: dict[str, tuple[str, ...]] = {
    "portal": (
        "portal transaccional",
        "app movil",
        "sucursal virtual",
        "portal de clientes",
        "app",
    ),
    "doc": ("poder", "escritura", "certificado de existencia", "acta de asamblea", "contrato"),
    "product": ("fondo de inversion colectiva", "fiducia de inversion", "fideicomiso", "FIC"),
    "tax": (
        "certificado de retencion en la fuente",
        "certificado tributario",
        "informacion exogena",
    ),
    "pay": ("transferencia", "pago a proveedores", "giro", "pago PSE", "dispersion de fondos"),
    "cert": ("certificado de saldo", "certificado bancario", "extracto", "certificado de aportes"),
    "data": ("direccion", "telefono", "correo electronico", "cuenta bancaria inscrita", "celular"),
}


CATEGORIES: tuple[Category, ...] = (
    Category(
        "acceso_contrasenas",
        (
            "no puedo ingresar al {portal}",
            "contraseña bloqueada",
            "olvide mi clave",
            "usuario bloqueado en el {portal}",
            "restablecer contraseña",
            "no me llega el codigo de verificacion",
            "clave vencida no deja entrar",
            "token de seguridad no funciona",
        ),
        (
            "el sistema dice usuario o contraseña invalidos",
            "intente varias veces y se bloqueo la cuenta",
            "necesito desbloquear el acceso para consultar mi {product}",
            "el codigo OTP llega tarde y expira",
            "cambie de celular y no tengo el token",
        ),
        (
            "se desbloquea usuario y se envia clave temporal",
            "se restablece la contraseña y el cliente ingresa correctamente",
            "se reasigna el token y se valida el acceso",
        ),
    ),
    Category(
        "legalizacion_documentos",
        (
            "legalizacion de {doc}",
            "radicar {doc} para legalizar",
            "estado de la legalizacion del {doc}",
            "documentos pendientes de firma",
            "apostille de {doc}",
            "autenticacion de firmas en notaria",
        ),
        (
            "envie el {doc} autenticado hace una semana y no tengo respuesta",
            "me devolvieron el {doc} porque falta la firma del representante legal",
            "necesito saber que documentos faltan para la vinculacion al {product}",
            "el {doc} tiene fecha de expedicion mayor a 30 dias",
        ),
        (
            "se valida el {doc} y se legaliza en el sistema",
            "se informa al cliente los documentos faltantes",
            "se radica el documento y se asigna al area juridica",
        ),
    ),
    Category(
        "pagos_transferencias",
        (
            "{pay} no aplicada",
            "no se ve reflejada la {pay}",
            "{pay} rechazada",
            "pago duplicado",
            "solicitud de retiro del {product}",
            "devolucion de {pay}",
            "la {pay} sale en proceso",
        ),
        (
            "hice la {pay} desde el {portal} y el dinero no llega",
            "el beneficiario dice que no ha recibido el pago",
            "me debitaron dos veces el mismo valor",
            "la orden de giro quedo pendiente de aprobacion",
            "necesito retirar recursos de mi {product} a la {data}",
        ),
        (
            "se verifica la {pay} y se aplica manualmente",
            "se reversa el pago duplicado",
            "se confirma con tesoreria que la {pay} fue exitosa",
        ),
    ),
    Category(
        "certificados",
        (
            "solicitud de {cert}",
            "no puedo descargar el {cert}",
            "{cert} con datos errados",
            "necesito el {cert} del {product}",
            "generar {cert} para banco",
        ),
        (
            "requiero el {cert} para un tramite con otra entidad",
            "el {cert} sale en blanco desde el {portal}",
            "el valor del {cert} no coincide con mi saldo",
            "necesito el {cert} firmado digitalmente",
        ),
        (
            "se genera el {cert} y se envia al correo del cliente",
            "se corrige la informacion y se expide nuevo {cert}",
            "se indica la ruta de descarga del {cert} en el {portal}",
        ),
    ),
    Category(
        "actualizacion_datos",
        (
            "actualizar {data}",
            "cambio de {data}",
            "actualizacion de datos del titular",
            "corregir nombre en el sistema",
            "registrar nueva {data}",
            "formulario de actualizacion SARLAFT",
        ),
        (
            "me cambie de casa y necesito actualizar la {data}",
            "la {data} registrada esta mal",
            "quiero inscribir otra cuenta bancaria para los pagos del {product}",
            "no puedo actualizar mis datos en el {portal}",
        ),
        (
            "se actualiza la {data} en el sistema core",
            "se envia formulario de actualizacion al cliente",
            "se valida identidad y se modifica el registro",
        ),
    ),
    Category(
        "productos_inversion",
        (
            "informacion sobre el {product}",
            "rentabilidad del {product}",
            "apertura de {product}",
            "cancelacion del {product}",
            "adicion de recursos al {product}",
            "plazo de permanencia del {product}",
        ),
        (
            "quisiera conocer la rentabilidad del ultimo mes del {product}",
            "deseo invertir mas dinero en mi {product}",
            "cual es la comision de administracion del {product}",
            "quiero cancelar el {product} y retirar el saldo",
        ),
        (
            "se envia ficha tecnica del {product} al cliente",
            "se explica la rentabilidad y las comisiones",
            "se remite a asesor comercial para la apertura",
        ),
    ),
    Category(
        "errores_portal",
        (
            "error en el {portal}",
            "el {portal} no carga",
            "pantalla en blanco en el {portal}",
            "error 500 al consultar saldo",
            "la app se cierra sola",
            "no funciona el boton de descarga",
            "lentitud en el {portal}",
        ),
        (
            "al ingresar aparece un mensaje de error inesperado",
            "el {portal} se queda cargando y no muestra los movimientos",
            "despues de la actualizacion la app no abre",
            "el boton de descargar el {cert} no responde",
        ),
        (
            "se escala a desarrollo el error del {portal}",
            "se limpia cache y el cliente confirma funcionamiento",
            "incidente masivo solucionado por el proveedor",
        ),
    ),
    Category(
        "documentos_tributarios",
        (
            "solicitud de {tax}",
            "{tax} año gravable",
            "error en el {tax}",
            "no aparece el {tax} para declarar renta",
            "retencion en la fuente mal calculada",
        ),
        (
            "necesito el {tax} para la declaracion de renta",
            "el {tax} no incluye los rendimientos del {product}",
            "el contador pide el {tax} actualizado",
            "la retencion aplicada no corresponde",
        ),
        (
            "se genera el {tax} y se envia al cliente",
            "se revisa con contabilidad el calculo de la retencion",
            "se publica el {tax} en el {portal}",
        ),
    ),
    Category(
        "extractos_movimientos",
        (
            "no me llegan los extractos",
            "extracto mensual del {product}",
            "movimiento no reconocido",
            "consulta de movimientos",
            "diferencia en el saldo del extracto",
        ),
        (
            "no he recibido el extracto de los ultimos dos meses",
            "aparece un movimiento que no reconozco en el {product}",
            "el saldo del extracto no coincide con el {portal}",
            "necesito el historico de movimientos del año",
        ),
        (
            "se reenvia el extracto al correo registrado",
            "se explica el movimiento al cliente",
            "se concilia el saldo con operaciones",
        ),
    ),
)


NEW_CATEGORY = Category(
    "fraude_suplantacion",
    (
        "posible fraude en mi cuenta",
        "suplantacion de identidad",
        "transaccion fraudulenta",
        "reporte de phishing",
    ),
    (
        "recibi un correo falso pidiendo mis claves",
        "alguien hizo un retiro que no autorice",
        "me llamaron haciendose pasar por la fiduciaria",
    ),
    ("se bloquea el producto y se escala a seguridad", "se abre caso de fraude"),
)


NEW_PRODUCT_PHRASES: tuple[str, ...] = (
    "billetera digital cripto",
    "wallet de criptoactivos",
    "tokenizacion de activos",
    "stablecoin",
    "nuevo portafolio ESG verde",
)


GENERIC_SUBJECTS = (
    "solicitud cliente",
    "consulta general",
    "requerimiento urgente",
    "caso pendiente de respuesta",
    "problema con mi {product}",
    "inconveniente en el {portal}",
)


GENERIC_RESOLUTIONS = (
    "se atiende la solicitud",
    "se da respuesta al cliente por correo",
    "caso cerrado por el agente",
    "se escala al area encargada",
)


GREETINGS = ("Buenos dias", "Buenas tardes", "Hola", "Cordial saludo", "Estimados", "Señores")


CLOSINGS = ("Gracias", "Quedo atento", "Muchas gracias", "Agradezco su ayuda", "Saludos")


AGENTS = (
    "Laura Gomez",
    "Andres Rojas",
    "Camila Diaz",
    "Jorge Perez",
    "Natalia Ruiz",
    "Felipe Mora",
)


CLIENT_NAMES = ("Carlos", "Maria", "Juan", "Ana", "Luis", "Paola", "Diego", "Sofia")


FILLERS = (
    "es urgente",
    "por favor revisar",
    "ya habia reportado esto antes",
    "llame a la linea y no me solucionaron",
    "adjunto pantallazo",
    "desde ayer",
    "me pueden ayudar",
)


ACCENTED = {
    "sesion": "sesión",
    "informacion": "información",
    "codigo": "código",
    "verificacion": "verificación",
    "dias": "días",
    "movil": "móvil",
    "aplicacion": "aplicación",
    "retencion": "retención",
    "direccion": "dirección",
    "telefono": "teléfono",
}
